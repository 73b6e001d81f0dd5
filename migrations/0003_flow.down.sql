DROP TABLE IF EXISTS flow_steps;
DROP TABLE IF EXISTS flow_requests;
