"""What this folder's scripts share: the committed (a)/(c3) runner
(``../2026-12-03-five-percent-longer/run.py``: config, data, seeds, arms) as ``longer``, and the
small-fov LSN weights every arm separates with (``WEIGHTS``)."""
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("longer", os.path.join(HERE, "..", "2026-12-03-five-percent-longer", "run.py"))
longer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(longer)
WEIGHTS = os.path.join(HERE, "..", "..", "lsn_fast", "weights", "lsn_small_fov.safetensors")
