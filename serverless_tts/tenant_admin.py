"""``serverless-tts tenants ...``: tenant administration against whichever store is configured."""

from __future__ import annotations

import argparse

from shared.tenants.base import IssuedKey, Tenant, TenantLimits, TenantStore


def add_tenant_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tenants = commands.add_parser("tenants", help="manage tenants, keys, limits and usage")
    actions = tenants.add_subparsers(required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create a tenant and show its key once")
    create.add_argument("name")
    _limit_arguments(create)
    create.set_defaults(tenant_command=_create)

    actions.add_parser("list", help="list tenants").set_defaults(tenant_command=_list)

    for action, active in (("enable", True), ("disable", False)):
        toggle = actions.add_parser(action, help=f"{action} a tenant's key")
        toggle.add_argument("tenant_id")
        toggle.set_defaults(tenant_command=_set_active, active=active)

    rotate = actions.add_parser("rotate-key", help="issue a new key; the old one stops working")
    rotate.add_argument("tenant_id")
    rotate.set_defaults(tenant_command=_rotate)

    limits = actions.add_parser(
        "set-limits", help="change the given limits (0 = unlimited); others stay as they are"
    )
    limits.add_argument("tenant_id")
    _limit_arguments(limits, TenantLimits(None, None, None, None))
    limits.set_defaults(tenant_command=_set_limits)

    engines = actions.add_parser(
        "set-engines",
        help="the engines the tenant's jobs try, primary first, e.g. xtts,elevenlabs",
    )
    engines.add_argument("tenant_id")
    order = engines.add_mutually_exclusive_group(required=True)
    order.add_argument("--order", type=_engine_list, help="comma-separated engine names")
    order.add_argument(
        "--worker-order", action="store_true", help="clear it: use the worker's TTS_ENGINES"
    )
    engines.set_defaults(tenant_command=_set_engines)

    usage = actions.add_parser("usage", help="a tenant's usage totals per day")
    usage.add_argument("tenant_id")
    usage.add_argument("--days", type=int, default=30)
    usage.set_defaults(tenant_command=_usage)


def _limit_arguments(parser: argparse.ArgumentParser, defaults: TenantLimits | None = None) -> None:
    defaults = defaults or TenantLimits()
    parser.add_argument("--monthly-chars", type=int, default=defaults.monthly_char_quota)
    parser.add_argument("--per-minute", type=int, default=defaults.requests_per_minute)
    parser.add_argument("--per-hour", type=int, default=defaults.requests_per_hour)
    parser.add_argument("--max-voices", type=int, default=defaults.max_voices)


def _limits(args: argparse.Namespace, current: TenantLimits | None = None) -> TenantLimits:
    """Limits from the flags; a flag not given keeps ``current`` (0 means unlimited)."""
    current = current or TenantLimits()

    def pick(flag: int | None, kept: int | None) -> int | None:
        return kept if flag is None else (flag or None)

    return TenantLimits(
        monthly_char_quota=pick(args.monthly_chars, current.monthly_char_quota),
        requests_per_minute=pick(args.per_minute, current.requests_per_minute),
        requests_per_hour=pick(args.per_hour, current.requests_per_hour),
        max_voices=pick(args.max_voices, current.max_voices),
    )


def _create(args: argparse.Namespace, store: TenantStore) -> None:
    _print_key(store.create_tenant(args.name, _limits(args)))


def _rotate(args: argparse.Namespace, store: TenantStore) -> None:
    _print_key(store.rotate_key(args.tenant_id))


def _print_key(issued: IssuedKey) -> None:
    print(f"tenant {issued.tenant.name} ({issued.tenant.id})")
    print(f"API key (shown once, keep it): {issued.api_key}")


def _list(args: argparse.Namespace, store: TenantStore) -> None:
    for tenant in store.list_tenants():
        print(_describe(tenant))


def _set_active(args: argparse.Namespace, store: TenantStore) -> None:
    print(_describe(store.set_active(args.tenant_id, args.active)))


def _set_limits(args: argparse.Namespace, store: TenantStore) -> None:
    current = store.get_tenant(args.tenant_id)
    print(_describe(store.set_limits(args.tenant_id, _limits(args, current.limits))))


def _engine_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _set_engines(args: argparse.Namespace, store: TenantStore) -> None:
    order = None if args.worker_order else args.order
    print(_describe(store.set_engine_order(args.tenant_id, order)))


def _usage(args: argparse.Namespace, store: TenantStore) -> None:
    days = store.usage_by_day(args.tenant_id, args.days)  # an unknown tenant fails first
    print("day         requests  failed  chars     audio_s   bytes")
    for day in days:
        print(
            f"{day.day}  {day.requests:>8}  {day.failed:>6}  {day.input_chars:>8}"
            f"  {day.audio_seconds:>8.1f}  {day.audio_bytes}"
        )


def _describe(tenant: Tenant) -> str:
    limits = tenant.limits
    state = "active" if tenant.active else "disabled"

    def shown(value: int | None) -> str:
        return "unlimited" if value is None else str(value)

    return (
        f"{tenant.id}  {tenant.name}  stts_{tenant.key_prefix}_...  {state}"
        f"  chars/month={shown(limits.monthly_char_quota)}"
        f"  per-minute={shown(limits.requests_per_minute)}"
        f"  per-hour={shown(limits.requests_per_hour)}  max-voices={shown(limits.max_voices)}"
        f"  engines={','.join(tenant.engine_order) if tenant.engine_order else 'worker'}"
    )
