"""Example projects shipped with lockgate; ``lockgate demo`` runs the fraud one."""

__all__: list[str] = []
