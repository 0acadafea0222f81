"""diffusers' classes are taken through one lock (models/diffusers_folder.diffusers_class): its lazy
module is not thread-safe, and the app asks for classes from several threads at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_threads_asking_for_diffusers_classes_at_once_all_get_them():
    # a fresh interpreter, so that diffusers is not imported yet when the threads start together
    code = textwrap.dedent("""
        import threading
        from diffstudio.models.diffusers_folder import diffusers_class
        names = ["AutoencoderKL", "UNet2DModel", "DDIMScheduler", "AutoencoderKL"] * 2
        barrier, got, errors = threading.Barrier(len(names)), {}, []
        def ask(i, name):
            barrier.wait()
            try:
                got[i] = diffusers_class(name).__name__
            except Exception as e:
                errors.append(f"{name}: {e!r}")
        threads = [threading.Thread(target=ask, args=(i, n)) for i, n in enumerate(names)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors, errors
        assert [got[i] for i in range(len(names))] == names, got
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
