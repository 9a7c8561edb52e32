"""GPS: NMEA framing, fields and parser, the gpsd reader, the serial and gpsd sources, the
trusted clock."""
