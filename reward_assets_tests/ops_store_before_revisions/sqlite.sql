CREATE TABLE api_idempotency (
	"key" VARCHAR(200) NOT NULL,
	fingerprint VARCHAR(64) NOT NULL,
	status_code INTEGER,
	response JSON,
	created_at DATETIME NOT NULL,
	completed_at DATETIME,
	PRIMARY KEY ("key")
);

CREATE TABLE followups (
	customer_id VARCHAR(64) NOT NULL,
	campaign VARCHAR(32) NOT NULL,
	due_date DATE NOT NULL,
	status VARCHAR(16) NOT NULL,
	reason TEXT,
	signup_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (customer_id, campaign)
);

CREATE INDEX ix_followups_due_date ON followups (due_date);

CREATE TABLE llm_cache (
	"key" VARCHAR(64) NOT NULL,
	model VARCHAR(128) NOT NULL,
	draft JSON NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY ("key")
);

CREATE TABLE model_registry (
	name VARCHAR(64) NOT NULL,
	version VARCHAR(64) NOT NULL,
	status VARCHAR(16) NOT NULL,
	created_at DATETIME NOT NULL,
	decided_at DATETIME,
	artefact_path TEXT NOT NULL,
	trained_as_of DATE,
	metrics JSON NOT NULL,
	features JSON NOT NULL,
	params JSON NOT NULL,
	reasons JSON,
	PRIMARY KEY (name, version)
);

CREATE TABLE outbox (
	idempotency_key VARCHAR(200) NOT NULL,
	customer_id VARCHAR(64) NOT NULL,
	campaign VARCHAR(32) NOT NULL,
	occurrence VARCHAR(32) NOT NULL,
	status VARCHAR(16) NOT NULL,
	reason TEXT,
	send_at DATETIME NOT NULL,
	timezone VARCHAR(64) NOT NULL,
	to_address TEXT,
	message_id VARCHAR(200),
	subject TEXT,
	preheader TEXT,
	text_body TEXT,
	html_body TEXT,
	reward_ids JSON,
	content_source VARCHAR(16),
	attempts INTEGER NOT NULL,
	next_attempt_at DATETIME,
	claimed_by VARCHAR(64),
	lease_until DATETIME,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	sent_at DATETIME,
	smtp_response TEXT,
	run_id VARCHAR(64),
	PRIMARY KEY (idempotency_key)
);

CREATE INDEX ix_outbox_customer_id ON outbox (customer_id);

CREATE INDEX ix_outbox_send_at ON outbox (send_at);

CREATE INDEX ix_outbox_status ON outbox (status);

CREATE TABLE suppressions (
	customer_id VARCHAR(64) NOT NULL,
	reason VARCHAR(32) NOT NULL,
	source VARCHAR(32) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (customer_id)
);

CREATE TABLE switches (
	name VARCHAR(64) NOT NULL,
	value VARCHAR(64) NOT NULL,
	updated_at DATETIME NOT NULL,
	updated_by VARCHAR(64),
	PRIMARY KEY (name)
);
