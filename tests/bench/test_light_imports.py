"""The bench's fold runners do not import the generators' stack: diffusers pulls in torch._dynamo,
whose import asks for a temporary directory, so a `bench detect` on a full disk could not name the
fold file it failed to write (fault matrix row "bench detect on a full disk names the file")."""

from __future__ import annotations

import subprocess
import sys


def test_detect_and_localize_do_not_import_augment_or_diffusers() -> None:
    code = (
        "import sys, lungforge.bench.protocol.detect, lungforge.bench.protocol.localize, lungforge.bench.protocol.verdict\n"
        "print(sorted(m for m in ('diffusers', 'lungforge.augment.options', 'lungforge.diffusion.samplers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
