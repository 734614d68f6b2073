-- Least privilege (deploy/roles.sql): producers may insert messages but never write a
-- delivery or history row, and the worker may update deliveries but never write history.
-- Yet a producer's INSERT creates deliveries (and routes files), and the worker's UPDATE
-- records history, through triggers, and a trigger runs with the privileges of the role whose
-- statement fired it. So these trigger functions run as their owner (the schema's owner, who
-- ran the migrations). Behaviour is unchanged: every name in them is schema-qualified, and the
-- fixed search_path keeps a caller's objects (or pg_temp) from standing in for pg_catalog's.
ALTER FUNCTION altinn_outbox.create_deliveries() SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp;
ALTER FUNCTION altinn_outbox.route_files() SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp;
ALTER FUNCTION altinn_outbox.record_history() SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp;

-- Trigger functions cannot be called directly, but a function that runs as its owner is
-- executable by nobody else by habit (firing a trigger checks no EXECUTE privilege).
REVOKE EXECUTE ON FUNCTION altinn_outbox.create_deliveries() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION altinn_outbox.route_files() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION altinn_outbox.record_history() FROM PUBLIC;
