-- Sliding rate windows, replacing the fixed ones of authorize_request: at most N requests in ANY
-- 60 s (per-minute) or 3600 s (per-hour). Fixed windows let up to 2N through across a window
-- boundary (N at the end of one minute, N more at the start of the next).
--
-- request_log holds one row per allowed request of the last hour. A window is checked by reading
-- the tenant's N-th newest entry inside it: a scan of at most N index entries. Tenants are now
-- charged by id: the worker authenticated the key already (cached), so the RPC needs no hash.

create table public.request_log (
    tenant_id uuid not null references public.tenants (id) on delete cascade,
    at timestamptz not null
);

create index request_log_tenant_id_at_idx on public.request_log (tenant_id, at);

alter table public.request_log enable row level security;

create policy "Anonymous and signed-in users never see the request log"
    on public.request_log as restrictive
    for all to anon, authenticated
    using (false) with check (false);

-- No old worker may count a request between the copy below and the drop: hold the table.
lock table public.rate_windows in exclusive mode;

-- Carry the open fixed windows over, so deploying this hands no tenant a fresh allowance: the
-- current minute's requests logged at the minute's start (they leave the sliding minute when the
-- fixed minute would have ended), the rest of the current hour's at the hour's start.
with open_windows as (
    select
        w.tenant_id,
        coalesce(sum(w.requests) filter (
            where w.window_kind = 'minute' and w.window_start = date_trunc('minute', now(), 'UTC')
        ), 0) as minute_requests,
        coalesce(sum(w.requests) filter (
            where w.window_kind = 'hour' and w.window_start = date_trunc('hour', now(), 'UTC')
        ), 0) as hour_requests
    from public.rate_windows w
    group by w.tenant_id
)
insert into public.request_log (tenant_id, at)
select o.tenant_id, date_trunc('minute', now(), 'UTC')
from open_windows o cross join lateral generate_series(1, o.minute_requests)
union all
select o.tenant_id, date_trunc('hour', now(), 'UTC')
from open_windows o cross join lateral generate_series(1, o.hour_requests - o.minute_requests);

drop function public.authorize_request(text, integer);
drop table public.rate_windows;

-- Seconds until one more request fits in the window ending at p_now, or null if one fits now:
-- the time until the p_limit-th newest entry inside the window leaves it (whole seconds, at
-- least 1). A null limit is unlimited; a limit of 0 admits nothing, so its wait is the window.
create function public.sliding_window_retry_after_s(
    p_tenant_id uuid, p_limit integer, p_window interval, p_now timestamptz
)
returns integer
language sql
stable
set search_path = ''
as $$
    select case
        when p_limit is null then null
        when p_limit <= 0 then ceil(extract(epoch from p_window))::integer
        else (
            select greatest(1, ceil(extract(epoch from r.at + p_window - p_now)))::integer
            from public.request_log r
            where r.tenant_id = p_tenant_id and r.at > p_now - p_window
            order by r.at desc
            offset greatest(p_limit - 1, 0)
            limit 1
        )
    end;
$$;

-- Returns {"decision": ..., "tenant": {...tenant row without key_hash...}, ...}.
-- decision: allowed | unknown_tenant (no tenant) | inactive | rate_limited_minute |
-- rate_limited_hour (with retry_after_s) | quota_exceeded (with used: characters already used
-- this month). Nothing is recorded unless the decision is allowed.
create function public.authorize_tenant(p_tenant_id uuid, p_chars integer)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    t public.tenants%rowtype;
    v_tenant jsonb;
    v_now timestamptz;
    v_month date;
    v_used bigint;
    v_retry integer;
begin
    if p_chars is null or p_chars < 0 then
        raise exception 'p_chars must be a non-negative integer' using errcode = '22023';
    end if;

    -- The lock serializes every authorization of this tenant until this transaction commits.
    -- NO KEY UPDATE: it does not wait for the key-share locks that usage_logs and request_log
    -- inserts take.
    select * into t from public.tenants where id = p_tenant_id for no key update;
    if not found then
        return jsonb_build_object('decision', 'unknown_tenant');
    end if;
    v_tenant := to_jsonb(t) - 'key_hash';
    if not t.active then
        return jsonb_build_object('decision', 'inactive', 'tenant', v_tenant);
    end if;

    -- clock_timestamp(), not now(): read after the lock, so log entries are in lock order even
    -- when a transaction started before the one it waited for.
    v_now := clock_timestamp();
    v_month := (date_trunc('month', v_now, 'UTC') at time zone 'UTC')::date;

    v_retry := public.sliding_window_retry_after_s(
        t.id, t.requests_per_minute, interval '1 minute', v_now
    );
    if v_retry is not null then
        return jsonb_build_object(
            'decision', 'rate_limited_minute', 'tenant', v_tenant, 'retry_after_s', v_retry
        );
    end if;

    v_retry := public.sliding_window_retry_after_s(
        t.id, t.requests_per_hour, interval '1 hour', v_now
    );
    if v_retry is not null then
        return jsonb_build_object(
            'decision', 'rate_limited_hour', 'tenant', v_tenant, 'retry_after_s', v_retry
        );
    end if;

    if t.monthly_char_quota is not null then
        v_used := coalesce((
            select m.input_chars from public.monthly_usage m
            where m.tenant_id = t.id and m.month = v_month
        ), 0);
        if v_used + p_chars > t.monthly_char_quota then
            return jsonb_build_object(
                'decision', 'quota_exceeded', 'tenant', v_tenant, 'used', v_used
            );
        end if;
    end if;

    -- Logged even for unlimited windows, so a limit set mid-window starts from the truth.
    insert into public.request_log (tenant_id, at) values (t.id, v_now);
    -- Entries older than the longest window are never read again.
    delete from public.request_log r
    where r.tenant_id = t.id and r.at <= v_now - interval '1 hour';

    insert into public.monthly_usage as m (tenant_id, month, input_chars, requests)
    values (t.id, v_month, p_chars, 1)
    on conflict (tenant_id, month) do update
        set input_chars = m.input_chars + excluded.input_chars, requests = m.requests + 1;

    return jsonb_build_object('decision', 'allowed', 'tenant', v_tenant);
end;
$$;

-- Functions are executable by PUBLIC by default (and Supabase grants anon and authenticated on
-- top): only the worker may spend a tenant's quota or read its request log.
revoke execute on function public.authorize_tenant(uuid, integer) from public, anon, authenticated;
grant execute on function public.authorize_tenant(uuid, integer) to service_role;
revoke execute on function public.sliding_window_retry_after_s(uuid, integer, interval, timestamptz)
    from public, anon, authenticated;
