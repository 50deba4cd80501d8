"""Storage backends: one module per backend, all behind `migrate.stores.base`."""
