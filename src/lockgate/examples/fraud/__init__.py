"""The card-fraud example: data generator, features, contract and training (see README.md)."""

__all__: list[str] = []
