"""One package per channel behind one small interface (see ``base``) and one registry."""
