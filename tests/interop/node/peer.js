'use strict';
// node's `ws` as a WebSocket peer for ripple's interop tests (tests/interop/peers.py).
//
//   node peer.js client <ws-url> [--deflate]   connect to <url>
//   node peer.js server [--deflate]            listen on 127.0.0.1, a free port; serve one connection
//   node peer.js hub                           run sessions for many tests (below)
//
// --deflate offers (client) or accepts (server) permessage-deflate, compressing
// every message however small; without it, permessage-deflate is off.
//
// In client and server mode, commands come on stdin and events go to stdout,
// and the process exits when stdin closes. The tests use hub mode instead,
// which saves starting node for each test: the hub listens on 127.0.0.1 (a
// free port, printed on stdout as {"event": "hub", "port": N}); each TCP
// connection to it is one session, whose first line is
//   {"op": "start", "args": ["client", "<ws-url>", "--deflate"]}
// (the arguments of client or server mode), then commands and events as in
// those modes. Closing the connection ends the session and its WebSocket.
// The hub exits when its stdin closes.
//
// Commands: one JSON object per line, each with an "id":
//   {"op": "send", "text": "..."} or {"op": "send", "b64": "..."}
//       optional "binary" (opcode: binary or text; default: binary for b64, text for text)
//       and "fin" (default true; false sends a fragment, continued by the next sends)
//   {"op": "ping", "b64": "..."}
//   {"op": "close", "code": 4001, "reason": "later"}
// Events: one JSON object per line:
//   {"event": "listening", "port": N}       server mode, once listening
//   {"event": "open", "extensions": "...", "offered": ..., "accepted": ...}
//                                           the WebSocket connection is open; extensions
//                                           names those negotiated ("" for none), offered
//                                           and accepted are the request's and response's
//                                           Sec-WebSocket-Extensions headers (null if absent)
//   {"event": "ack", "id": N, "error": null | "..."}   a command was carried out
//   {"event": "message", "binary": bool, "text": "..."} or {..., "b64": "..."}
//   {"event": "ping", "b64": "..."}, {"event": "pong", "b64": "..."}
//   {"event": "close", "code": N, "reason": "..."}
//   {"event": "error", "message": "..."}

const net = require('node:net');
const readline = require('node:readline');
const { WebSocket, WebSocketServer } = require('ws');

const USAGE = 'usage: node peer.js client <ws-url> [--deflate] | node peer.js server [--deflate] | node peer.js hub\n';

// One WebSocket connection, as client or server, reporting through emit().
class Session {
  constructor(emit) {
    this.emit = emit;
    this.socket = null;
    this.server = null;
  }

  // args: the command line of client or server mode. Returns false if they're wrong.
  start(args) {
    const deflate = args.includes('--deflate');
    const [mode, url] = args.filter((arg) => arg !== '--deflate');
    if (mode === 'client' && url) {
      let offered;
      let accepted;
      // threshold 0: compress small messages too (ws applies its threshold
      // only without context takeover).
      const ws = new WebSocket(url, {
        perMessageDeflate: deflate ? { threshold: 0 } : false,
        finishRequest: (req) => {
          offered = req.getHeader('sec-websocket-extensions');
          req.end();
        },
      });
      this.attach(ws);
      ws.on('upgrade', (res) => { accepted = res.headers['sec-websocket-extensions']; });
      ws.on('open', () => this.opened(ws, offered, accepted));
    } else if (mode === 'server') {
      const wss = new WebSocketServer({
        host: '127.0.0.1',
        port: 0,
        // threshold 0: compress small messages too.
        perMessageDeflate: deflate ? { threshold: 0 } : false,
      });
      this.server = wss;
      let accepted;
      wss.on('headers', (headers) => {
        const line = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
        accepted = line === undefined ? undefined : line.slice(line.indexOf(':') + 1).trim();
      });
      wss.on('listening', () => this.emit({ event: 'listening', port: wss.address().port }));
      wss.on('error', (err) => this.emit({ event: 'error', message: String(err && err.message) }));
      wss.on('connection', (ws, req) => {
        if (this.socket !== null) {
          ws.terminate();
          return;
        }
        wss.close(); // stop listening; the open connection stays
        this.attach(ws);
        this.opened(ws, req.headers['sec-websocket-extensions'], accepted);
      });
    } else {
      return false;
    }
    return true;
  }

  opened(ws, offered, accepted) {
    const header = (value) => (value === undefined ? null : String(value));
    this.emit({ event: 'open', extensions: ws.extensions, offered: header(offered), accepted: header(accepted) });
  }

  attach(ws) {
    this.socket = ws;
    ws.on('message', (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (isBinary) {
        this.emit({ event: 'message', binary: true, b64: buf.toString('base64') });
      } else {
        this.emit({ event: 'message', binary: false, text: buf.toString('utf8') });
      }
    });
    ws.on('ping', (data) => this.emit({ event: 'ping', b64: data.toString('base64') }));
    ws.on('pong', (data) => this.emit({ event: 'pong', b64: data.toString('base64') }));
    ws.on('close', (code, reason) => this.emit({ event: 'close', code, reason: reason.toString('utf8') }));
    ws.on('error', (err) => this.emit({ event: 'error', message: String(err && err.message) }));
  }

  run(command) {
    const ack = (err) => this.emit({ event: 'ack', id: command.id, error: err ? String(err.message || err) : null });
    const socket = this.socket;
    if (socket === null) {
      ack(new Error('no open connection'));
      return;
    }
    try {
      switch (command.op) {
        case 'send': {
          const isB64 = typeof command.b64 === 'string';
          const payload = isB64 ? Buffer.from(command.b64, 'base64') : command.text;
          const binary = typeof command.binary === 'boolean' ? command.binary : isB64;
          const fin = command.fin !== false;
          socket.send(payload, { binary, fin }, ack);
          break;
        }
        case 'ping':
          socket.ping(Buffer.from(command.b64 || '', 'base64'), undefined, ack);
          break;
        case 'close':
          socket.close(command.code, command.reason);
          ack(null);
          break;
        default:
          ack(new Error(`unknown op ${JSON.stringify(command.op)}`));
      }
    } catch (err) {
      ack(err);
    }
  }

  // Drop the connection (and stop listening) at once, as if the process exited.
  end() {
    if (this.server !== null) this.server.close();
    if (this.socket !== null) this.socket.terminate();
  }
}

function stdioMode(args) {
  const session = new Session((event) => process.stdout.write(JSON.stringify(event) + '\n'));
  if (!session.start(args)) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() !== '') session.run(JSON.parse(line));
  });
  lines.on('close', () => process.exit(0));
}

function hubMode() {
  const hub = net.createServer((conn) => {
    conn.setNoDelay(true); // Nagle would hold each ack back until the last one's ACK
    const emit = (event) => {
      if (!conn.destroyed && conn.writable) conn.write(JSON.stringify(event) + '\n');
    };
    const session = new Session(emit);
    let started = false;
    const lines = readline.createInterface({ input: conn, crlfDelay: Infinity });
    lines.on('line', (line) => {
      if (line.trim() === '') return;
      const command = JSON.parse(line);
      if (started) {
        session.run(command);
      } else if (command.op === 'start' && session.start(command.args || [])) {
        started = true;
      } else {
        emit({ event: 'error', message: `expected a start command, got ${line}` });
        conn.end();
      }
    });
    conn.on('close', () => session.end());
    conn.on('error', () => session.end());
  });
  hub.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ event: 'hub', port: hub.address().port }) + '\n');
  });
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

function main() {
  const args = process.argv.slice(2);
  if (args.length === 1 && args[0] === 'hub') {
    hubMode();
  } else {
    stdioMode(args);
  }
}

main();
