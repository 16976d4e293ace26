"""Compilers from the one network + rule description to other systems (Lava, NIR, Brian2)."""
