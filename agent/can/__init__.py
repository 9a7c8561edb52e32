"""CAN: DBC loading and repair, frame layout, decoding into the vehicle state, the bus source
and recorded logs."""
