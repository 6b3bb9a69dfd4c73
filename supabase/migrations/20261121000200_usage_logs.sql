-- Usage logs: one row per job, billed or not. (tenant_id, request_id) is unique so the
-- background writer can retry a batch without ever double-counting a job.

create table public.usage_logs (
    id bigint generated always as identity primary key,
    tenant_id uuid not null references public.tenants (id) on delete cascade,
    request_id text not null check (length(request_id) between 1 and 200),
    action text not null,
    input_chars integer not null default 0 check (input_chars >= 0),
    audio_bytes bigint not null default 0 check (audio_bytes >= 0),
    audio_seconds double precision not null default 0 check (audio_seconds >= 0),
    latency_ms double precision not null default 0 check (latency_ms >= 0),
    engine text,
    voice text,
    format text,
    delivery text,
    cached boolean not null default false,
    streaming boolean not null default false,
    error_code text,
    created_at timestamptz not null default now(),
    unique (tenant_id, request_id)
);

-- Per-tenant reports read a time range of one tenant's rows.
create index usage_logs_tenant_id_created_at_idx on public.usage_logs (tenant_id, created_at);

alter table public.usage_logs enable row level security;

create policy "Anonymous and signed-in users never see usage logs"
    on public.usage_logs as restrictive
    for all to anon, authenticated
    using (false) with check (false);
