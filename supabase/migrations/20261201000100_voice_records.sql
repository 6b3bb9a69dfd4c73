-- Voice records: what the worker keeps about each cloned voice besides its objects. Adds the
-- engine that computed the latents, a version that changes whenever the latents may have
-- changed (it keys the audio cache), updated_at, and the bounds the worker checks first; and
-- create_voice, which enforces the tenant's max_voices atomically across workers.

-- Rows from before get the engine that could clone then (XTTS), a version of their own that
-- no cache entry was made under, and updated_at = created_at.
alter table public.voices
    add column engine text not null default 'xtts' check (engine ~ '^[a-z][a-z0-9_-]{0,31}$'),
    add column version text not null default ('r-' || replace(gen_random_uuid()::text, '-', ''))
        check (version ~ '^[A-Za-z0-9._:-]{1,128}$'),
    add column updated_at timestamptz not null default now();

update public.voices set updated_at = created_at;

-- NOT VALID: enforced on every insert and update from now on, without refusing to deploy over
-- a row written before these bounds existed.
alter table public.voices
    add constraint voices_name_length check (char_length(name) between 1 and 100) not valid,
    add constraint voices_description_length check (char_length(description) <= 500) not valid;

create trigger voices_set_updated_at
    before update on public.voices
    for each row execute function public.set_updated_at();

-- Returns {"decision": ..., ...}. decision: created (with voice: the new row) | unknown_tenant |
-- inactive | limit_reached (with voices: how many the tenant has, and max_voices). Nothing is
-- written unless the decision is created. The caller draws the voice id and the version.
create function public.create_voice(
    p_tenant_id uuid,
    p_voice_id text,
    p_name text,
    p_engine text,
    p_language text,
    p_description text,
    p_version text,
    p_reference_object_key text,
    p_latents_object_key text
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    t public.tenants%rowtype;
    v_count integer;
    v_voice public.voices%rowtype;
begin
    -- The tenant's row lock serializes every creation of its voices until this transaction
    -- commits, so two workers cannot both count the last free slot. NO KEY UPDATE, as in
    -- authorize_tenant: it does not wait for the key-share locks that inserts referencing the
    -- tenant take (usage rows, request log, this very insert).
    select * into t from public.tenants where id = p_tenant_id for no key update;
    if not found then
        return jsonb_build_object('decision', 'unknown_tenant');
    end if;
    if not t.active then
        return jsonb_build_object('decision', 'inactive');
    end if;

    if t.max_voices is not null then
        select count(*) into v_count from public.voices v where v.tenant_id = t.id;
        if v_count >= t.max_voices then
            return jsonb_build_object(
                'decision', 'limit_reached', 'voices', v_count, 'max_voices', t.max_voices
            );
        end if;
    end if;

    insert into public.voices (
        tenant_id, voice_id, name, engine, language, description, version,
        reference_object_key, latents_object_key
    )
    values (
        t.id, p_voice_id, p_name, p_engine, p_language, p_description, p_version,
        p_reference_object_key, p_latents_object_key
    )
    returning * into v_voice;

    return jsonb_build_object('decision', 'created', 'voice', to_jsonb(v_voice));
end;
$$;

-- Functions are executable by PUBLIC by default (and Supabase grants anon and authenticated on
-- top): only the worker may add a tenant's voices.
revoke execute on function public.create_voice(uuid, text, text, text, text, text, text, text, text)
    from public, anon, authenticated;
grant execute on function public.create_voice(uuid, text, text, text, text, text, text, text, text)
    to service_role;
