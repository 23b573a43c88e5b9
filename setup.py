"""Optional C speedup for masking; the build carries on without it when no compiler works."""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    # The C speedup is optional: a failed compile leaves the pure-Python path.
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001
            print(f"ripple: C speedup not built ({exc}); using pure Python")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"ripple: C speedup not built ({exc}); using pure Python")


ext_modules = []
if os.environ.get("RIPPLE_NO_SPEEDUPS") != "1":
    ext_modules.append(
        Extension("ripple._speedups", ["src/ripple/_speedups.c"], optional=True)
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
