-- Usage rows: one per charged job. request_id comes from the client and may repeat; unique on
-- (tenant_id, request_id), a reused request id was charged but its row dropped as a duplicate,
-- so usage under-reported the quota counter. job_id is the server's id for each dispatched job:
-- unique per tenant, it keeps the background writer's retries idempotent.

alter table public.usage_logs
    add column job_id text check (length(job_id) between 1 and 200),
    add column voice_version text;

-- Rows from before were one per request id: it is their job id.
update public.usage_logs set job_id = request_id;

alter table public.usage_logs
    alter column job_id set not null,
    drop constraint usage_logs_tenant_id_request_id_key,
    add constraint usage_logs_tenant_id_job_id_key unique (tenant_id, job_id);

-- Looking up a client's request id stays cheap.
create index usage_logs_tenant_id_request_id_idx on public.usage_logs (tenant_id, request_id);
