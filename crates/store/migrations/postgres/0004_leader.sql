-- Which replica runs the background work. The leader holds a session advisory lock (freed by
-- PostgreSQL when its connection ends) and refreshes this row; the others read it for /health
-- and, if it goes stale while the lock is still held (a hung leader), end its session.
CREATE TABLE leader (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    replica      TEXT    NOT NULL,
    backend_pid  INTEGER NOT NULL,
    since        BIGINT  NOT NULL,
    heartbeat_at BIGINT  NOT NULL
);
