"""First-run convenience of the embedded default: a ``dev`` tenant whose key is shown once."""

from __future__ import annotations

from shared.tenants.base import IssuedKey, TenantStore

DEV_TENANT_NAME = "dev"


def ensure_dev_tenant(store: TenantStore) -> IssuedKey | None:
    """Create the dev tenant when missing; the key comes back only on that first call."""
    if store.find_by_name(DEV_TENANT_NAME) is not None:
        return None
    return store.create_tenant(DEV_TENANT_NAME)
