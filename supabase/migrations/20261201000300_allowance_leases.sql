-- Allowance leases: a worker reserves a few requests and characters of one tenant in ONE call,
-- under the same sliding windows and monthly quota as authorize_tenant, then spends them in its
-- own memory, so a warm job waits for no database round trip. What it did not spend comes back.
--
-- No overshoot: a leased request is logged in request_log when the lease is granted, stamped at
-- the lease's end (the latest moment the worker may spend it), and its characters are added to
-- monthly_usage at once. Every entry is thus at or after the moment its request really ran, so
-- the windows never count fewer requests than really happened in them. Settling a lease deletes
-- the entries of requests it did not spend, re-stamps the spent ones at the settling moment (still
-- no earlier than their use) and refunds the unspent characters.
--
-- A lease a worker never settles (the process was killed) counts as spent: its entries leave the
-- windows on their own, its characters stay charged. Its row is reaped an hour after it expired.
--
-- authorize_tenant is redefined (same signature and answers) so that it and lease_allowance make
-- their checks in one function, charge_refusal.

create table public.allowance_leases (
    id uuid primary key default gen_random_uuid(),
    tenant_id uuid not null references public.tenants (id) on delete cascade,
    -- The month whose counter the characters were added to (first day, UTC): a refund after
    -- midnight of the month's last day goes back where it came from.
    month date not null check (extract(day from month) = 1),
    requests integer not null check (requests >= 1),
    chars bigint not null check (chars >= 0),
    expires_at timestamptz not null,
    created_at timestamptz not null default now()
);

create index allowance_leases_tenant_id_expires_at_idx
    on public.allowance_leases (tenant_id, expires_at);

alter table public.allowance_leases enable row level security;

create policy "Anonymous and signed-in users never see allowance leases"
    on public.allowance_leases as restrictive
    for all to anon, authenticated
    using (false) with check (false);

-- The lease a window entry was reserved under (null once settled, and for authorize_tenant's).
alter table public.request_log
    add column lease_id uuid references public.allowance_leases (id) on delete set null;

create index request_log_lease_id_idx on public.request_log (lease_id) where lease_id is not null;

-- Characters of the tenant's month (first day, UTC) counted so far, leases' reservations included.
create function public.month_chars_used(p_tenant_id uuid, p_month date)
returns bigint
language sql
stable
set search_path = ''
as $$
    select coalesce((
        select m.input_chars from public.monthly_usage m
        where m.tenant_id = p_tenant_id and m.month = p_month
    ), 0::bigint);
$$;

-- The tenant's row, locked until this transaction commits (null: no such tenant). Every charge of
-- a tenant (authorize_tenant, lease_allowance, return_allowance) takes this lock first, so they
-- are serialized. NO KEY UPDATE: it does not wait for the key-share locks that usage_logs and
-- request_log inserts take.
create function public.lock_tenant(p_tenant_id uuid)
returns public.tenants
language sql
set search_path = ''
as $$
    select * from public.tenants where id = p_tenant_id for no key update;
$$;

-- Add a charge to the tenant's month counter, and drop its log entries older than the longest
-- window (they are never read again).
create function public.count_charge(
    p_tenant_id uuid, p_month date, p_chars bigint, p_requests integer, p_now timestamptz
)
returns void
language sql
set search_path = ''
as $$
    delete from public.request_log r
    where r.tenant_id = p_tenant_id and r.at <= p_now - interval '1 hour';

    insert into public.monthly_usage as m (tenant_id, month, input_chars, requests)
    values (p_tenant_id, p_month, p_chars, p_requests)
    on conflict (tenant_id, month) do update
        set input_chars = m.input_chars + excluded.input_chars,
            requests = m.requests + excluded.requests;
$$;

-- The refusal (p_decision) one more request gets from one sliding window at p_now, or null when
-- it fits in it.
create function public.window_refusal(
    t public.tenants, p_limit integer, p_window interval, p_decision text, p_now timestamptz
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'decision', p_decision, 'tenant', to_jsonb(t) - 'key_hash', 'retry_after_s', w.retry
    )
    from (select public.sliding_window_retry_after_s(t.id, p_limit, p_window, p_now) as retry) w
    where w.retry is not null;
$$;

-- The answer one more request of p_chars characters gets at p_now, or null when it fits: the
-- refusals of authorize_tenant, checked in its order (inactive, the minute, the hour, the quota)
-- and with its fields (retry_after_s; used), so a lease is refused exactly as a request is.
create function public.charge_refusal(t public.tenants, p_chars bigint, p_now timestamptz)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
    v_tenant jsonb := to_jsonb(t) - 'key_hash';
    v_refusal jsonb;
    v_used bigint;
begin
    if not t.active then
        return jsonb_build_object('decision', 'inactive', 'tenant', v_tenant);
    end if;
    -- COALESCE stops at the first refusal: the hour is not read when the minute refuses.
    v_refusal := coalesce(
        public.window_refusal(
            t, t.requests_per_minute, interval '1 minute', 'rate_limited_minute', p_now
        ),
        public.window_refusal(t, t.requests_per_hour, interval '1 hour', 'rate_limited_hour', p_now)
    );
    if v_refusal is not null then
        return v_refusal;
    end if;
    if t.monthly_char_quota is not null then
        v_used := public.month_chars_used(
            t.id, (date_trunc('month', p_now, 'UTC') at time zone 'UTC')::date
        );
        if v_used + p_chars > t.monthly_char_quota then
            return jsonb_build_object(
                'decision', 'quota_exceeded', 'tenant', v_tenant, 'used', v_used
            );
        end if;
    end if;
    return null;
end;
$$;

-- authorize_tenant as before (same answers, same lock, same clock), its checks now shared with
-- lease_allowance through charge_refusal, its lock and counting through lock_tenant and
-- count_charge.
create or replace function public.authorize_tenant(p_tenant_id uuid, p_chars integer)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    t public.tenants%rowtype;
    v_now timestamptz;
    v_month date;
    v_refusal jsonb;
begin
    if p_chars is null or p_chars < 0 then
        raise exception 'p_chars must be a non-negative integer' using errcode = '22023';
    end if;

    t := public.lock_tenant(p_tenant_id);
    if t.id is null then
        return jsonb_build_object('decision', 'unknown_tenant');
    end if;
    -- clock_timestamp(), not now(): read after the lock, so log entries are in lock order even
    -- when a transaction started before the one it waited for.
    v_now := clock_timestamp();
    v_month := (date_trunc('month', v_now, 'UTC') at time zone 'UTC')::date;
    v_refusal := public.charge_refusal(t, p_chars, v_now);
    if v_refusal is not null then
        return v_refusal;
    end if;

    -- Logged even for unlimited windows, so a limit set mid-window starts from the truth.
    insert into public.request_log (tenant_id, at) values (t.id, v_now);
    perform public.count_charge(t.id, v_month, p_chars, 1, v_now);

    return jsonb_build_object('decision', 'allowed', 'tenant', to_jsonb(t) - 'key_hash');
end;
$$;

-- How many more requests fit in the window ending at p_now (null: unlimited). Counts at most
-- p_limit index entries, as sliding_window_retry_after_s does. Entries stamped after p_now
-- (leases not yet settled) count too.
create function public.sliding_window_free(
    p_tenant_id uuid, p_limit integer, p_window interval, p_now timestamptz
)
returns integer
language sql
stable
set search_path = ''
as $$
    select case
        when p_limit is null then null
        else greatest(p_limit - (
            select count(*)::integer from (
                select 1 from public.request_log r
                where r.tenant_id = p_tenant_id and r.at > p_now - p_window
                limit greatest(p_limit, 0)
            ) inside
        ), 0)
    end;
$$;

-- Settle one lease at p_now: p_used_requests and p_used_chars of it were spent (each clamped to
-- what it holds). Returns false when there is no such lease (settled already, or reaped), so a
-- retried settle never refunds twice. The caller holds the tenant's row lock.
create function public.settle_allowance_lease(
    p_lease_id uuid, p_used_requests integer, p_used_chars bigint, p_now timestamptz
)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
    l public.allowance_leases%rowtype;
    v_requests integer;
    v_chars bigint;
begin
    select * into l from public.allowance_leases where id = p_lease_id for update;
    if not found then
        return false;
    end if;
    v_requests := l.requests - least(greatest(coalesce(p_used_requests, 0), 0), l.requests);
    v_chars := l.chars - least(greatest(coalesce(p_used_chars, 0), 0::bigint), l.chars);

    delete from public.request_log r
    where r.ctid = any(array(
        select u.ctid from public.request_log u where u.lease_id = l.id limit v_requests
    ));
    update public.request_log r set at = least(r.at, p_now) where r.lease_id = l.id;

    update public.monthly_usage m
    set input_chars = m.input_chars - v_chars, requests = m.requests - v_requests
    where m.tenant_id = l.tenant_id and m.month = l.month;

    -- Sets the spent entries' lease_id to null: they are ordinary log entries from now on.
    delete from public.allowance_leases where id = l.id;
    return true;
end;
$$;

-- Lease up to p_requests requests and p_chars characters for p_ttl_s seconds, settling
-- p_settle_lease_id first (its spent counts given) in the same transaction, so a worker renewing
-- its lease gets back what it did not spend before asking again. p_need_chars (at most p_chars)
-- is the job at hand: the lease is refused unless one request of that size fits.
--
-- Returns {"decision": ..., "tenant": {...}, ...} with the decisions of authorize_tenant (and
-- their retry_after_s and used), except that "allowed" is "leased", with
-- "lease": {"id", "requests", "chars", "expires_at"}: between 1 and p_requests requests (what the
-- windows have room for) and between p_need_chars and p_chars characters (what the quota has).
-- A settle is kept whatever the decision.
create function public.lease_allowance(
    p_tenant_id uuid,
    p_requests integer,
    p_chars bigint,
    p_need_chars integer,
    p_ttl_s double precision,
    p_settle_lease_id uuid default null,
    p_used_requests integer default 0,
    p_used_chars bigint default 0
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    t public.tenants%rowtype;
    v_now timestamptz;
    v_expires timestamptz;
    v_month date;
    v_refusal jsonb;
    v_requests integer;
    v_chars bigint;
    v_lease uuid;
begin
    if p_requests is null or p_requests < 1 then
        raise exception 'p_requests must be at least 1' using errcode = '22023';
    end if;
    if p_need_chars is null or p_need_chars < 0 or p_chars is null or p_chars < p_need_chars then
        raise exception 'p_need_chars must be between 0 and p_chars' using errcode = '22023';
    end if;
    if p_ttl_s is null or p_ttl_s <= 0 or p_ttl_s > 3600 then
        raise exception 'p_ttl_s must be in (0, 3600]' using errcode = '22023';
    end if;

    t := public.lock_tenant(p_tenant_id);
    if t.id is null then
        return jsonb_build_object('decision', 'unknown_tenant');
    end if;
    v_now := clock_timestamp();  -- after the lock, as authorize_tenant's
    if p_settle_lease_id is not null then
        perform public.settle_allowance_lease(
            p_settle_lease_id, p_used_requests, p_used_chars, v_now
        );
    end if;
    -- Leases whose worker never settled them (killed): counted as spent, forgotten.
    delete from public.allowance_leases a
    where a.tenant_id = t.id and a.expires_at < v_now - interval '1 hour';

    v_refusal := public.charge_refusal(t, p_need_chars, v_now);
    if v_refusal is not null then
        return v_refusal;
    end if;
    v_month := (date_trunc('month', v_now, 'UTC') at time zone 'UTC')::date;
    -- At least p_need_chars: the quota had room for them above. LEAST skips nulls (unlimited).
    v_chars := least(p_chars, t.monthly_char_quota - public.month_chars_used(t.id, v_month));

    -- At least 1: both windows had room for one more above.
    v_requests := least(
        p_requests,
        public.sliding_window_free(t.id, t.requests_per_minute, interval '1 minute', v_now),
        public.sliding_window_free(t.id, t.requests_per_hour, interval '1 hour', v_now)
    );
    v_expires := v_now + make_interval(secs => p_ttl_s);

    insert into public.allowance_leases (tenant_id, month, requests, chars, expires_at)
    values (t.id, v_month, v_requests, v_chars, v_expires)
    returning id into v_lease;
    insert into public.request_log (tenant_id, at, lease_id)
    select t.id, v_expires, v_lease from generate_series(1, v_requests);
    perform public.count_charge(t.id, v_month, v_chars, v_requests, v_now);

    return jsonb_build_object(
        'decision', 'leased',
        'tenant', to_jsonb(t) - 'key_hash',
        'lease', jsonb_build_object(
            'id', v_lease, 'requests', v_requests, 'chars', v_chars, 'expires_at', v_expires
        )
    );
end;
$$;

-- Give a lease back: p_used_requests and p_used_chars of it were spent. Idempotent: returns
-- {"decision": "returned"} the first time, {"decision": "unknown_lease"} after.
create function public.return_allowance(
    p_lease_id uuid, p_used_requests integer, p_used_chars bigint
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_tenant_id uuid;
begin
    select a.tenant_id into v_tenant_id from public.allowance_leases a where a.id = p_lease_id;
    if not found then
        return jsonb_build_object('decision', 'unknown_lease');
    end if;
    -- The tenant's row first, as every charge takes it, so no lease or authorize interleaves.
    perform public.lock_tenant(v_tenant_id);
    if public.settle_allowance_lease(
        p_lease_id, p_used_requests, p_used_chars, clock_timestamp()
    ) then
        return jsonb_build_object('decision', 'returned');
    end if;
    return jsonb_build_object('decision', 'unknown_lease');
end;
$$;

revoke execute on function public.lease_allowance(
    uuid, integer, bigint, integer, double precision, uuid, integer, bigint
) from public, anon, authenticated;
grant execute on function public.lease_allowance(
    uuid, integer, bigint, integer, double precision, uuid, integer, bigint
) to service_role;
revoke execute on function public.return_allowance(uuid, integer, bigint)
    from public, anon, authenticated;
grant execute on function public.return_allowance(uuid, integer, bigint) to service_role;
revoke execute on function public.settle_allowance_lease(uuid, integer, bigint, timestamptz)
    from public, anon, authenticated;
revoke execute on function public.sliding_window_free(uuid, integer, interval, timestamptz)
    from public, anon, authenticated;
revoke execute on function public.charge_refusal(public.tenants, bigint, timestamptz)
    from public, anon, authenticated;
revoke execute on function public.window_refusal(
    public.tenants, integer, interval, text, timestamptz
) from public, anon, authenticated;
revoke execute on function public.month_chars_used(uuid, date) from public, anon, authenticated;
revoke execute on function public.lock_tenant(uuid) from public, anon, authenticated;
revoke execute on function public.count_charge(uuid, date, bigint, integer, timestamptz)
    from public, anon, authenticated;
