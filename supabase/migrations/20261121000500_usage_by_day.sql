-- Daily usage totals for one tenant: today and the days - 1 days before it (UTC days), only days
-- with at least one job, oldest first. "failed" counts jobs that ended with an error code.

create function public.usage_by_day(p_tenant_id uuid, p_days integer default 30)
returns table (
    day date,
    requests bigint,
    failed bigint,
    input_chars bigint,
    audio_seconds double precision,
    audio_bytes bigint
)
language sql
stable
set search_path = ''
as $$
    select
        (u.created_at at time zone 'UTC')::date,
        count(*),
        count(*) filter (where u.error_code is not null),
        coalesce(sum(u.input_chars), 0)::bigint,
        coalesce(sum(u.audio_seconds), 0)::double precision,
        coalesce(sum(u.audio_bytes), 0)::bigint
    from public.usage_logs u
    where u.tenant_id = p_tenant_id
      and u.created_at >= (
          ((now() at time zone 'UTC')::date - (greatest(p_days, 1) - 1))::timestamp
          at time zone 'UTC'
      )
    group by 1
    order by 1;
$$;

revoke execute on function public.usage_by_day(uuid, integer) from public, anon, authenticated;
grant execute on function public.usage_by_day(uuid, integer) to service_role;
