-- Cloned voices: the tenant's reference audio and the engine's conditioning latents live in
-- object storage; these rows hold their object keys. A voice id is unique within its tenant.

create table public.voices (
    id uuid primary key default gen_random_uuid(),
    tenant_id uuid not null references public.tenants (id) on delete cascade,
    voice_id text not null check (length(voice_id) between 1 and 100),
    name text not null,
    language text,
    description text,
    reference_object_key text,
    latents_object_key text,
    created_at timestamptz not null default now(),
    unique (tenant_id, voice_id)
);

alter table public.voices enable row level security;

create policy "Anonymous and signed-in users never see voices"
    on public.voices as restrictive
    for all to anon, authenticated
    using (false) with check (false);
