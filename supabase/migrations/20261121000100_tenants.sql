-- Tenants: one row per API customer. Only the SHA-256 hex of the API key is stored; the 8-char
-- prefix (also printed inside the key) finds the row and identifies the key in admin listings.
-- Limits are per tenant; a null limit means unlimited.

create table public.tenants (
    id uuid primary key default gen_random_uuid(),
    name text not null unique check (length(name) between 1 and 200),
    key_prefix text not null unique check (key_prefix ~ '^[a-z0-9]{8}$'),
    -- Unique so the authorize RPC finds the row by hash through an index.
    key_hash text not null unique check (key_hash ~ '^[0-9a-f]{64}$'),
    active boolean not null default true,
    monthly_char_quota bigint check (monthly_char_quota >= 0),
    requests_per_minute integer check (requests_per_minute >= 0),
    requests_per_hour integer check (requests_per_hour >= 0),
    max_voices integer not null default 10 check (max_voices >= 0),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

comment on column public.tenants.key_hash is
    'sha256 hex of the whole API key; the key itself is never stored';

create function public.set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

create trigger tenants_set_updated_at
    before update on public.tenants
    for each row execute function public.set_updated_at();

-- Only the worker (service_role, which bypasses RLS) reads or writes tenants. The restrictive
-- policy keeps that true even if a permissive policy for these roles is added by mistake later.
alter table public.tenants enable row level security;

create policy "Anonymous and signed-in users never see tenants"
    on public.tenants as restrictive
    for all to anon, authenticated
    using (false) with check (false);
