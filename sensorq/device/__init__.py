"""sensorq for microcontrollers, host side.

* :mod:`.bytecode` — typed plan → device bytecode (``compile_plan``,
  ``compile_for_device``, ``format_c_array``), the stream's schema hash and
  its C configuration (``schema_hash``, ``format_c_config``); format in
  docs/device.md;
* :mod:`.reference` — the device's answers computed with numpy;
* :mod:`.native` — the C library (device_port/) built for the host, via
  ctypes: blocks, queries, RAM and flash rings;
* :mod:`.flashsim` — a simulated NOR flash and the power-cut points of a run;
* :mod:`.vectors` — the shared test vectors and the example firmware's I/O;
* :mod:`.image` — a model's device image (docs/models.md §11): the .sqm
  validated once, its inputs bound to a ring's channels, fixed-width records
  that sq_model_load checks for memory safety only;
* :mod:`.models` — models on the device: the C model runtime through ctypes,
  the integers a ring holds for a model's inputs, the model's output stream
  and its schema hash, queries over a model's outputs compiled for it, the
  model firmware's I/O.
"""
