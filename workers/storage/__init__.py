"""Repository backends behind one small protocol (see ``base.Storage``)."""
