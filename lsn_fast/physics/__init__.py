"""Physics: the layer data model and everything the images are made of.

* :mod:`.layers` — :class:`LayerStack` (soft, upper, lower line integrals; axis; spacing);
* :mod:`.detector` — :class:`Detector` (Poisson + electronic noise, blur, scatter);
* :mod:`.philox` — counter-based Philox-4x32-10 noise;
* :mod:`.moves` — the one vocabulary of bone moves (``bone``, ``moves``, ``interp``) and the
  whole-pixel / sub-pixel moves of layer tensors;
* :mod:`.reference` — the differentiable eager reference of translation, Beer–Lambert and the detector;
* :mod:`.jsw` — joint space width ground truth (``measure_jsw``, ``estimate_axis``);
* :mod:`.phantom` — the finger-joint phantom (``generate``).

Modules here import only each other (downwards) and :mod:`lsn_fast.utils`.
"""
