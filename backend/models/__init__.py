"""torch networks: the generator G and the critics D_s / D_u."""
