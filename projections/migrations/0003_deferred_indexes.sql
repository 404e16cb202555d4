-- Secondary indexes a rebuild dropped from its new version to fold faster (see
-- projections.IndexDeferrer): their definitions (pg_get_indexdef), created again once
-- the version has caught up and before it can serve. Kept here, with the rebuild, so
-- that an interrupted rebuild recreates them when it resumes.
ALTER TABLE rebuilds ADD COLUMN IF NOT EXISTS deferred_indexes text[] NOT NULL DEFAULT '{}';
