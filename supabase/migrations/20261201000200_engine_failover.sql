-- Failover: each tenant may name the engines its jobs try, primary first (null: the worker's
-- own order), and each usage row says why a fallback engine answered (null: the primary did).
-- Names are checked as the worker checks them (shared/tenants/decisions.py); engines a worker
-- has not loaded are skipped when a job runs, so no list of engines is pinned here.

alter table public.tenants
    add column engine_order text[]
        check (
            engine_order is null
            or (
                cardinality(engine_order) between 1 and 8
                and array_position(engine_order, null) is null
                and array_to_string(engine_order, ',')
                    ~ '^[a-z][a-z0-9_-]{0,31}(,[a-z][a-z0-9_-]{0,31})*$'
            )
        );

alter table public.usage_logs
    add column fallback_reason text check (char_length(fallback_reason) <= 200);
