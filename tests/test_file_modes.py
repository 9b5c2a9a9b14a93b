"""Files the library writes get the user's umask (issue 35): mkstemp and safetensors create 0600."""

import os
import stat

import pytest

import lsn_fast as lf
from lsn_fast.io import write_png
from lsn_fast.model.lsn import LSN, LSNConfig, save_weights


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        st, _ = lf.phantom.generate(1, size=32, spacing_mm=0.2, seed=0)
        paths = [tmp_path / "stack.safetensors", tmp_path / "img.png", tmp_path / "w.safetensors"]
        st.save(paths[0])
        write_png(paths[1], st.upper[0])
        save_weights(LSN(LSNConfig(base_channels=4)), paths[2])
    finally:
        os.umask(old)
    for p in paths:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask, (p, oct(os.stat(p).st_mode))
