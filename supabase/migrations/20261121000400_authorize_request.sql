-- Rate windows and monthly quota, enforced in one transaction per request so that any number of
-- workers share the same limits.
--
-- Fixed windows: one counter per (tenant, window kind, window start). A request is counted in
-- both the minute and the hour window and its characters in the month's counter, only when it is
-- allowed. Every authorization of a tenant takes that tenant's row lock first, so two workers
-- racing are serialized and never let more through than the limit.

create table public.rate_windows (
    tenant_id uuid not null references public.tenants (id) on delete cascade,
    window_kind text not null check (window_kind in ('minute', 'hour')),
    window_start timestamptz not null,
    requests integer not null check (requests >= 0),
    primary key (tenant_id, window_kind, window_start)
);

alter table public.rate_windows enable row level security;

create policy "Anonymous and signed-in users never see rate windows"
    on public.rate_windows as restrictive
    for all to anon, authenticated
    using (false) with check (false);

create table public.monthly_usage (
    tenant_id uuid not null references public.tenants (id) on delete cascade,
    -- First day of the month, UTC.
    month date not null check (extract(day from month) = 1),
    input_chars bigint not null default 0 check (input_chars >= 0),
    requests bigint not null default 0 check (requests >= 0),
    primary key (tenant_id, month)
);

alter table public.monthly_usage enable row level security;

create policy "Anonymous and signed-in users never see monthly usage"
    on public.monthly_usage as restrictive
    for all to anon, authenticated
    using (false) with check (false);

-- Returns {"decision": ..., "tenant": {...tenant row without key_hash...}, ...}.
-- decision: allowed | unknown_key (no tenant) | inactive | rate_limited_minute |
-- rate_limited_hour (with retry_after_s: seconds to the window's end, at least 1) |
-- quota_exceeded (with used: characters already used this month). Nothing is recorded unless
-- the decision is allowed.
create function public.authorize_request(p_key_hash text, p_chars integer)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    t public.tenants%rowtype;
    v_tenant jsonb;
    v_now timestamptz;
    v_minute timestamptz;
    v_hour timestamptz;
    v_month date;
    v_used bigint;
begin
    if p_chars is null or p_chars < 0 then
        raise exception 'p_chars must be a non-negative integer' using errcode = '22023';
    end if;

    -- The lock serializes every authorization of this tenant until this transaction commits.
    -- NO KEY UPDATE: it does not wait for the key-share locks that usage_logs inserts take.
    select * into t from public.tenants where key_hash = p_key_hash for no key update;
    if not found then
        return jsonb_build_object('decision', 'unknown_key');
    end if;
    v_tenant := to_jsonb(t) - 'key_hash';
    if not t.active then
        return jsonb_build_object('decision', 'inactive', 'tenant', v_tenant);
    end if;

    -- clock_timestamp(), not now(): read after the lock, so windows advance in lock order even
    -- when a transaction started before the one it waited for.
    v_now := clock_timestamp();
    v_minute := date_trunc('minute', v_now, 'UTC');
    v_hour := date_trunc('hour', v_now, 'UTC');
    v_month := (date_trunc('month', v_now, 'UTC') at time zone 'UTC')::date;

    if t.requests_per_minute is not null then
        v_used := coalesce((
            select w.requests from public.rate_windows w
            where w.tenant_id = t.id and w.window_kind = 'minute' and w.window_start = v_minute
        ), 0);
        if v_used >= t.requests_per_minute then
            return jsonb_build_object(
                'decision', 'rate_limited_minute',
                'tenant', v_tenant,
                'retry_after_s',
                greatest(1, ceil(extract(epoch from v_minute + interval '1 minute' - v_now)))::int
            );
        end if;
    end if;

    if t.requests_per_hour is not null then
        v_used := coalesce((
            select w.requests from public.rate_windows w
            where w.tenant_id = t.id and w.window_kind = 'hour' and w.window_start = v_hour
        ), 0);
        if v_used >= t.requests_per_hour then
            return jsonb_build_object(
                'decision', 'rate_limited_hour',
                'tenant', v_tenant,
                'retry_after_s',
                greatest(1, ceil(extract(epoch from v_hour + interval '1 hour' - v_now)))::int
            );
        end if;
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

    -- Counted even for unlimited windows, so a limit set mid-window starts from the truth.
    insert into public.rate_windows as w (tenant_id, window_kind, window_start, requests)
    values (t.id, 'minute', v_minute, 1), (t.id, 'hour', v_hour, 1)
    on conflict (tenant_id, window_kind, window_start) do update set requests = w.requests + 1;

    insert into public.monthly_usage as m (tenant_id, month, input_chars, requests)
    values (t.id, v_month, p_chars, 1)
    on conflict (tenant_id, month) do update
        set input_chars = m.input_chars + excluded.input_chars, requests = m.requests + 1;

    -- Closed windows are never read again; dropping them keeps two rows per tenant.
    delete from public.rate_windows w
    where w.tenant_id = t.id
      and w.window_start < case w.window_kind when 'minute' then v_minute else v_hour end;

    return jsonb_build_object('decision', 'allowed', 'tenant', v_tenant);
end;
$$;

-- Functions are executable by PUBLIC by default (and Supabase grants anon and authenticated on
-- top): only the worker may spend a tenant's quota.
revoke execute on function public.authorize_request(text, integer) from public, anon, authenticated;
grant execute on function public.authorize_request(text, integer) to service_role;
