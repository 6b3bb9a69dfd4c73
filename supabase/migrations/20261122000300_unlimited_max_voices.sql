-- max_voices null means unlimited, like the other limits; the >= 0 check stays.

alter table public.tenants alter column max_voices drop not null;
