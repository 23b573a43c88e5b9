'use strict';
// node's `ws` as a WebSocket peer for ripple's interop tests (tests/interop/peers.py).
//
//   node peer.js client <ws-url>   connect to <url>
//   node peer.js server            listen on 127.0.0.1, a free port; serve one connection
//
// stdin: one JSON command per line, each with an "id":
//   {"op": "send", "text": "..."} or {"op": "send", "b64": "..."}
//       optional "binary" (opcode: binary or text; default: binary for b64, text for text)
//       and "fin" (default true; false sends a fragment, continued by the next sends)
//   {"op": "ping", "b64": "..."}
//   {"op": "close", "code": 4001, "reason": "later"}
// stdout: one JSON event per line:
//   {"event": "listening", "port": N}       server mode, once listening
//   {"event": "open"}                       the WebSocket connection is open
//   {"event": "ack", "id": N, "error": null | "..."}   a command was carried out
//   {"event": "message", "binary": bool, "text": "..."} or {..., "b64": "..."}
//   {"event": "ping", "b64": "..."}, {"event": "pong", "b64": "..."}
//   {"event": "close", "code": N, "reason": "..."}
//   {"event": "error", "message": "..."}
// The process exits when stdin closes.

const readline = require('node:readline');
const { WebSocket, WebSocketServer } = require('ws');

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

let socket = null;

function attach(ws) {
  socket = ws;
  ws.on('message', (data, isBinary) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (isBinary) {
      emit({ event: 'message', binary: true, b64: buf.toString('base64') });
    } else {
      emit({ event: 'message', binary: false, text: buf.toString('utf8') });
    }
  });
  ws.on('ping', (data) => emit({ event: 'ping', b64: data.toString('base64') }));
  ws.on('pong', (data) => emit({ event: 'pong', b64: data.toString('base64') }));
  ws.on('close', (code, reason) => emit({ event: 'close', code, reason: reason.toString('utf8') }));
  ws.on('error', (err) => emit({ event: 'error', message: String(err && err.message) }));
}

function run(command) {
  const ack = (err) => emit({ event: 'ack', id: command.id, error: err ? String(err.message || err) : null });
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

function main() {
  const [mode, url] = process.argv.slice(2);
  if (mode === 'client' && url) {
    const ws = new WebSocket(url);
    attach(ws);
    ws.on('open', () => emit({ event: 'open' }));
  } else if (mode === 'server') {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    wss.on('listening', () => emit({ event: 'listening', port: wss.address().port }));
    wss.on('error', (err) => emit({ event: 'error', message: String(err && err.message) }));
    wss.on('connection', (ws) => {
      if (socket !== null) {
        ws.terminate();
        return;
      }
      wss.close(); // stop listening; the open connection stays
      attach(ws);
      emit({ event: 'open' });
    });
  } else {
    process.stderr.write('usage: node peer.js client <ws-url> | node peer.js server\n');
    process.exit(2);
  }

  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() !== '') run(JSON.parse(line));
  });
  lines.on('close', () => process.exit(0));
}

main();
