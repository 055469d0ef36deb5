"""sensorq for microcontrollers, host side.

* :mod:`.bytecode` — typed plan → device bytecode (``compile_plan``,
  ``compile_for_device``, ``format_c_array``), format in docs/device.md;
* :mod:`.reference` — the device's answers computed with numpy;
* :mod:`.native` — the C library (device_port/) built for the host, via ctypes;
* :mod:`.vectors` — the shared test vectors and the example firmware's I/O.
"""
