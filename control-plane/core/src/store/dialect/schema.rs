//! The schema of both backends: every migration in one table ([`STEPS`]), and the SQL that
//! differs per backend generated from lists: row-level security for every tenant table
//! ([`TENANT_TABLES`]) and the triggers that tell collectors about changes ([`SIGNALS`]).
//!
//! sqlx records each applied migration by version with the SHA-384 checksum of its SQL (table
//! `_sqlx_migrations`), applies the versions it has not recorded, and refuses to start when a
//! recorded version is missing from the list or its checksum differs (the description is stored
//! but not compared). So versions are never renumbered, and a released migration's SQL never
//! changes. Six versions (3, 6, 9, 12, 13, 14) shipped as hand-written SQL files before their SQL
//! was generated here: they keep the checksum of the file they shipped as
//! ([`Sql::Generated::recorded`]), which is how existing databases know them, and a unit test pins
//! the generated text, so neither side can drift. A later change is a new version.

use std::borrow::Cow;

use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use super::notices::{COMMANDS_CHANNEL, REVOCATIONS_CHANNEL};
use super::{Backend, SCOPE_SETTING};
use crate::store::CREDENTIAL_LOOKUP_SCOPE;

/// Which backends run a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// Both (the shared SQL dialect).
    Both,
    /// SQLite only.
    Sqlite,
    /// Postgres only.
    Postgres,
}

impl On {
    fn includes(self, backend: Backend) -> bool {
        match self {
            Self::Both => true,
            Self::Sqlite => backend == Backend::Sqlite,
            Self::Postgres => backend == Backend::Postgres,
        }
    }
}

/// The SQL of a migration.
#[derive(Debug, Clone, Copy)]
enum Sql {
    /// A file under `migrations/` (its checksum is sqlx's, of the text).
    File(&'static str),
    /// Generated from the lists below.
    Generated {
        /// Builds the SQL.
        build: fn() -> String,
        /// Hex SHA-384 that databases recorded for this version when it shipped as a file.
        recorded: &'static str,
    },
}

/// One migration.
#[derive(Debug, Clone, Copy)]
struct Step {
    version: i64,
    description: &'static str,
    on: On,
    sql: Sql,
}

/// Every migration, in version order. Gaps per backend are versions of the other backend.
const STEPS: [Step; 50] = [
    Step {
        version: 1,
        description: "init",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0001_init.sql")),
    },
    Step {
        version: 2,
        description: "control plane",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0002_control_plane.sql")),
    },
    Step {
        version: 3,
        description: "row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[..10]),
            recorded: "e24a78c2c96123754d0776937362cb67d314c67c2311b7b8e8c7b67d5981f2101567bdb5663939c80074b3050c163df2",
        },
    },
    Step {
        version: 4,
        description: "inventory model",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0004_inventory_model.sql")),
    },
    Step {
        version: 5,
        description: "proxy events",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0005_proxy_events.sql")),
    },
    Step {
        version: 6,
        description: "proxy events row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[10..12]),
            recorded: "0a455c4990a91cc60ad237252e4b4977541cd0f58b25a4d6b90fb79c8d2aab2c239b65581ccade6d4a5106df5771743e",
        },
    },
    Step {
        version: 7,
        description: "certificate renewal",
        on: On::Both,
        sql: Sql::File(include_str!(
            "../../../migrations/0007_certificate_renewal.sql"
        )),
    },
    Step {
        version: 8,
        description: "inventory base",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0008_inventory_base.sql")),
    },
    Step {
        version: 9,
        description: "command and revocation notifications",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || notify_functions(&SIGNALS[..4], false) + &notify_triggers(&SIGNALS[..4]),
            recorded: "432bb4900dd77e8c561ce2f31912a06eb6b886166fd9d5756a387b8697def9b92779a91471d80746705367c3f4ff8fbc",
        },
    },
    Step {
        version: 10,
        description: "device identity",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0010_device_identity.sql")),
    },
    Step {
        version: 11,
        description: "policies",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0011_policies.sql")),
    },
    Step {
        version: 12,
        description: "policies row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[12..13]),
            recorded: "8b52e3194d0d372544bfa5d37ddd23befb7d58e633c2f43bc628a51b6c8340adf1628109e951b84d362a4d41bc7f376d",
        },
    },
    Step {
        version: 13,
        description: "change epoch (sqlite)",
        on: On::Sqlite,
        sql: Sql::Generated {
            build: || CHANGE_EPOCH_TABLE.to_string() + &epoch_triggers(&SIGNALS[..4]),
            recorded: "8dbafdf253d47be118d85d3b4672ada0f2ba765df7db751158f5063cc7f043699691d68c605531bd45226e3fd30f56c5",
        },
    },
    Step {
        version: 14,
        description: "change epoch (postgres)",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || CHANGE_EPOCH_TABLE.to_string() + &notify_functions(&SIGNALS[..4], true),
            recorded: "91a4b5e123589367da972519451e51aa543aed2183f1d2845989d925301564474d889326b1b4fabbb0b40e7ff9c75cbb",
        },
    },
    // The write path (issue 12): versions 200 to 299.
    Step {
        version: 200,
        description: "tenant usage counters (sqlite)",
        on: On::Sqlite,
        sql: Sql::File(include_str!(
            "../../../migrations/0200_tenant_usage_sqlite.sql"
        )),
    },
    Step {
        version: 201,
        description: "tenant usage counters (postgres)",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/0201_tenant_usage_postgres.sql"
        )),
    },
    Step {
        version: 202,
        description: "tenant usage row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[15..16]),
            recorded: "70750f93582159ab644c7b83942a7d8f5e1835a5eb7d7e398d3b7a44518c9c1bca0ad5ec68956dd2e45cd24f15b8c016",
        },
    },
    Step {
        version: 203,
        description: "deployment secrets",
        on: On::Both,
        sql: Sql::File(include_str!(
            "../../../migrations/0203_deployment_secrets.sql"
        )),
    },
    Step {
        version: 204,
        description: "fleet sort indexes",
        on: On::Both,
        sql: Sql::File(include_str!(
            "../../../migrations/0204_fleet_sort_indexes.sql"
        )),
    },
    // Releases and rollouts (issue 14): numbered from 300 so other work's migrations do not
    // collide with them.
    Step {
        version: 300,
        description: "agent releases",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0300_agent_releases.sql")),
    },
    Step {
        version: 301,
        description: "agent releases row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[13..15]),
            recorded: "c2b278e634a9cffea931fcc440e6232380371cae480f06709a45c6cb872f0cc68daacc8bde57ece976c3cd2f0bd2828d",
        },
    },
    // The MCP gateway (issue 16): numbered from 500.
    Step {
        version: 500,
        description: "gateway",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0500_gateway.sql")),
    },
    Step {
        version: 501,
        description: "gateway row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[16..21]),
            recorded: "05d154e9f08c4376d494c2f7e5d453de88ee627b6ce52ec433b739c78c10b8a66f415cd24071cee9383cda290fa26c54",
        },
    },
    Step {
        version: 502,
        description: "gateway pins",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0502_gateway_pins.sql")),
    },
    Step {
        version: 503,
        description: "gateway pins row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[21..22]),
            recorded: "984a2698934cd3db69da9897f33e8c02aa77c705775bdf02795d4823c6e3ad79e1453b8f881c0d5eba65e080f04f7784",
        },
    },
    // Hardening (issue 11): numbered from 600.
    Step {
        version: 600,
        description: "re-enroll tokens",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/0600_reenroll_tokens.sql")),
    },
    // Remote servers routed through the gateway (issue 16, item 5): numbered from 700.
    Step {
        version: 700,
        description: "server gateway route",
        on: On::Both,
        sql: Sql::File(include_str!(
            "../../../migrations/0700_server_gateway_route.sql"
        )),
    },
    Step {
        version: 701,
        description: "gateway pin approvals",
        on: On::Both,
        sql: Sql::File(include_str!(
            "../../../migrations/0701_gateway_pin_approvals.sql"
        )),
    },
    Step {
        version: 702,
        description: "gateway pin approvals row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[22..23]),
            recorded: "0cf2b0da9a83412ac12dea74797f5ae11ef4bafa3ec2f0d4c848f7c4c1c00b96796cbc2701476586f31353368e5e0365",
        },
    },
    // The read path at fleet scale (issues 12 and 13): numbered from 800.
    Step {
        version: 800,
        description: "fleet read indexes",
        on: On::Both,
        sql: Sql::File(include_str!(
            "../../../migrations/0800_fleet_read_indexes.sql"
        )),
    },
    Step {
        version: 801,
        description: "tenant posture counters (sqlite)",
        on: On::Sqlite,
        sql: Sql::File(include_str!(
            "../../../migrations/0801_tenant_posture_sqlite.sql"
        )),
    },
    Step {
        version: 802,
        description: "tenant posture counters (postgres)",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/0802_tenant_posture_postgres.sql"
        )),
    },
    Step {
        version: 803,
        description: "tenant posture row level security",
        on: On::Postgres,
        sql: Sql::Generated {
            build: || tenant_isolation(&TENANT_TABLES[23..24]),
            recorded: "6057ae851aeaa4a223593c333a7e7672b1fad2d10047fba86af6c872accd71bfe88b93232c17a9dd730111bbf87ddc46",
        },
    },
    // The dashboard (issue 13): numbered from 1000.
    Step {
        version: 1000,
        description: "fleet change notifications",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1000_fleet_change_notify_postgres.sql"
        )),
    },
    Step {
        version: 1001,
        description: "inventory changes",
        on: On::Both,
        sql: Sql::File(include_str!(
            "../../../migrations/1001_inventory_changes.sql"
        )),
    },
    Step {
        version: 1002,
        description: "inventory changes row level security",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1002_inventory_changes_rls_postgres.sql"
        )),
    },
    // The read path at 100k endpoints, continued (issues 12 and 13): numbered from 1300.
    Step {
        version: 1300,
        description: "endpoint search (sqlite)",
        on: On::Sqlite,
        sql: Sql::File(include_str!(
            "../../../migrations/1300_endpoint_search_sqlite.sql"
        )),
    },
    Step {
        version: 1301,
        description: "endpoint search (postgres)",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1301_endpoint_search_postgres.sql"
        )),
    },
    Step {
        version: 1302,
        description: "server group rollup (sqlite)",
        on: On::Sqlite,
        sql: Sql::File(include_str!(
            "../../../migrations/1302_server_groups_sqlite.sql"
        )),
    },
    Step {
        version: 1303,
        description: "server group rollup (postgres)",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1303_server_groups_postgres.sql"
        )),
    },
    Step {
        version: 1304,
        description: "server group rollup row level security",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1304_server_groups_rls_postgres.sql"
        )),
    },
    Step {
        version: 1305,
        description: "server group trigger plans",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1305_server_group_plans_postgres.sql"
        )),
    },
    // Posture history, the Overview's trends (issue 13): numbered from 1500.
    Step {
        version: 1500,
        description: "posture samples",
        on: On::Both,
        sql: Sql::File(include_str!("../../../migrations/1500_posture_samples.sql")),
    },
    Step {
        version: 1501,
        description: "posture samples row level security",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1501_posture_samples_rls_postgres.sql"
        )),
    },
    // Postgres at 100k endpoints (issues 12 and 13): numbered from 1600.
    Step {
        version: 1600,
        description: "server group endpoint counts per statement",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1600_server_group_endpoints_per_statement_postgres.sql"
        )),
    },
    // The fleet search at 100k endpoints (issues 12 and 13): numbered from 1700.
    Step {
        version: 1700,
        description: "endpoint search text",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1700_endpoint_search_text_postgres.sql"
        )),
    },
    // Enrollments on Postgres at 100k endpoints (issue 12): numbered from 1800.
    Step {
        version: 1800,
        description: "tenant usage counters per statement",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1800_tenant_usage_per_statement_postgres.sql"
        )),
    },
    Step {
        version: 1801,
        description: "tenant usage counters follow tenant moves",
        on: On::Sqlite,
        sql: Sql::File(include_str!(
            "../../../migrations/1801_tenant_usage_moves_sqlite.sql"
        )),
    },
    Step {
        version: 1802,
        description: "credential lookups in one statement",
        on: On::Postgres,
        sql: Sql::File(include_str!(
            "../../../migrations/1802_credential_lookups_postgres.sql"
        )),
    },
    // The dashboard's pages at 100k endpoints (issue 13): numbered from 1900.
    Step {
        version: 1900,
        description: "policy rollout covering index",
        on: On::Sqlite,
        sql: Sql::File(include_str!(
            "../../../migrations/1900_policy_rollout_covering_sqlite.sql"
        )),
    },
];

/// Every table that holds tenant data (it has a `tenant_id` column): on Postgres each gets
/// row-level security. Append only, in the order migrations introduced them; each migration
/// above names the slice it secured. A test checks that every table of a migrated database with
/// a `tenant_id` column is listed and secured.
pub const TENANT_TABLES: [&str; 28] = [
    "api_keys",
    "enrollment_tokens",
    "endpoints",
    "endpoint_clients",
    "endpoint_servers",
    "endpoint_scan_errors",
    "endpoint_commands",
    "server_identities",
    "idempotency_keys",
    "audit_log",
    // version 6
    "proxy_events",
    "endpoint_tools",
    // version 12
    "policies",
    // version 301
    "release_rollouts",
    "rollout_targets",
    // version 202
    "tenant_usage",
    // version 501
    "gateway_upstreams",
    "gateway_config",
    "gateway_instances",
    "gateway_events",
    "rate_windows",
    // version 503
    "gateway_pins",
    // version 702
    "gateway_pin_approvals",
    // version 803
    "tenant_posture",
    // version 1002
    "endpoint_inventory_changes",
    // version 1304
    "server_group_facets",
    "server_group_endpoints",
    // version 1501
    "posture_samples",
];

/// Row-level security for `tables`: a row is visible and writable only in a transaction whose
/// scope ([`SCOPE_SETTING`]) is its tenant, or the credential-lookup scope. `FORCE` applies the
/// policy to the table owner too; a connection that set no scope sees no tenant rows (fails
/// closed). The application role must not be a superuser nor have `BYPASSRLS`.
fn tenant_isolation(tables: &[&str]) -> String {
    let scope = format!("current_setting('{SCOPE_SETTING}', true)");
    let rule = format!("tenant_id = {scope} OR {scope} = '{CREDENTIAL_LOOKUP_SCOPE}'");
    let mut sql = String::from("-- Tenant isolation (generated by store::dialect::schema).\n");
    for table in tables {
        sql.push_str(&format!(
            "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
             ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
             CREATE POLICY tenant_isolation ON {table} USING ({rule}) WITH CHECK ({rule});\n"
        ));
    }
    sql
}

/// A row change of one statement kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// `INSERT`.
    Insert,
    /// `UPDATE OF column`.
    UpdateOf(&'static str),
    /// `DELETE`.
    Delete,
}

impl Event {
    /// The trigger event clause.
    fn clause(self) -> String {
        match self {
            Self::Insert => "INSERT".into(),
            Self::UpdateOf(column) => format!("UPDATE OF {column}"),
            Self::Delete => "DELETE".into(),
        }
    }

    /// Postgres `TG_OP` of the event.
    fn operation(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::UpdateOf(_) => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    /// The row the change leaves (`OLD` for a delete).
    fn row(self) -> &'static str {
        match self {
            Self::Delete => "OLD",
            _ => "NEW",
        }
    }
}

/// A change a collector must act on: commands became pending for a device, or a device was
/// revoked or deleted. On Postgres the database announces it (`NOTIFY` on commit, payload
/// `tenant_id:endpoint_id`, never a secret) and bumps the change epoch; on SQLite a trigger bumps
/// the epoch (the store announces in process). The collector's periodic sweep reads the one
/// epoch row and checks its connected devices only when it moved.
#[derive(Debug, Clone, Copy)]
struct Signal {
    /// Table whose rows signal.
    table: &'static str,
    /// Which statement signals.
    event: Event,
    /// Condition on `NEW` / `OLD` (SQL both backends accept), if any.
    when: Option<&'static str>,
    /// Notification channel.
    channel: &'static str,
    /// Column of the row holding the endpoint id.
    endpoint_column: &'static str,
    /// Name of the SQLite trigger.
    sqlite_trigger: &'static str,
}

/// Every signal. Append only; each migration above names the slice it generated.
const SIGNALS: [Signal; 4] = [
    Signal {
        table: "endpoint_commands",
        event: Event::Insert,
        when: Some("NEW.status = 'pending'"),
        channel: COMMANDS_CHANNEL,
        endpoint_column: "endpoint_id",
        sqlite_trigger: "endpoint_commands_epoch_insert",
    },
    Signal {
        table: "endpoint_commands",
        event: Event::UpdateOf("status"),
        when: Some("NEW.status = 'pending' AND OLD.status IS DISTINCT FROM 'pending'"),
        channel: COMMANDS_CHANNEL,
        endpoint_column: "endpoint_id",
        sqlite_trigger: "endpoint_commands_epoch_update",
    },
    Signal {
        table: "endpoints",
        event: Event::UpdateOf("revoked_at"),
        when: Some("NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL"),
        channel: REVOCATIONS_CHANNEL,
        endpoint_column: "id",
        sqlite_trigger: "endpoints_epoch_revoke",
    },
    Signal {
        table: "endpoints",
        event: Event::Delete,
        when: None,
        channel: REVOCATIONS_CHANNEL,
        endpoint_column: "id",
        sqlite_trigger: "endpoints_epoch_delete",
    },
];

/// The Postgres function and trigger that announce the signals of one table.
#[derive(Debug, Clone, Copy)]
struct Notifier {
    table: &'static str,
    function: &'static str,
    trigger: &'static str,
}

/// One notifier per table that signals (names as released).
const NOTIFIERS: [Notifier; 2] = [
    Notifier {
        table: "endpoint_commands",
        function: "agent_bom_notify_command",
        trigger: "endpoint_commands_notify",
    },
    Notifier {
        table: "endpoints",
        function: "agent_bom_notify_revocation",
        trigger: "endpoints_revocation_notify",
    },
];

/// The one-row change counter.
const CHANGE_EPOCH_TABLE: &str = "-- Change epoch (generated by store::dialect::schema).\n\
    CREATE TABLE change_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);\n\
    INSERT INTO change_epoch (id, n) VALUES (1, 0);\n";

/// The statement that bumps the change counter.
const BUMP_EPOCH: &str = "UPDATE change_epoch SET n = n + 1 WHERE id = 1;";

/// Postgres: one trigger function per notifier that `NOTIFY`s each of its table's `signals`
/// (and bumps the change epoch when `bump_epoch`). `CREATE OR REPLACE`, so a later version can
/// redefine what an earlier one created.
fn notify_functions(signals: &[Signal], bump_epoch: bool) -> String {
    let mut sql = String::from("-- Change notifications (generated by store::dialect::schema).\n");
    for n in &NOTIFIERS {
        sql.push_str(&format!(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n",
            n.function
        ));
        for s in signals.iter().filter(|s| s.table == n.table) {
            let row = s.event.row();
            let mut actions = vec![format!(
                "PERFORM pg_notify('{}', {row}.tenant_id || ':' || {row}.{});",
                s.channel, s.endpoint_column
            )];
            if bump_epoch {
                actions.push(BUMP_EPOCH.to_string());
            }
            // The operation is tested apart from the condition: `OLD` means nothing to an
            // insert, `NEW` nothing to a delete.
            sql.push_str(&format!("    IF TG_OP = '{}' THEN\n", s.event.operation()));
            let indent = match s.when {
                Some(when) => {
                    sql.push_str(&format!("        IF {when} THEN\n"));
                    "            "
                }
                None => "        ",
            };
            for action in &actions {
                sql.push_str(&format!("{indent}{action}\n"));
            }
            if s.when.is_some() {
                sql.push_str("        END IF;\n");
            }
            sql.push_str("    END IF;\n");
        }
        sql.push_str("    RETURN NULL;\nEND\n$$;\n");
    }
    sql
}

/// Postgres: the trigger of each notifier, firing on every event of its table's `signals`.
fn notify_triggers(signals: &[Signal]) -> String {
    let mut sql = String::new();
    for n in &NOTIFIERS {
        let events: Vec<String> = signals
            .iter()
            .filter(|s| s.table == n.table)
            .map(|s| s.event.clause())
            .collect();
        sql.push_str(&format!(
            "CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW EXECUTE FUNCTION {}();\n",
            n.trigger,
            events.join(" OR "),
            n.table,
            n.function
        ));
    }
    sql
}

/// SQLite: one trigger per signal that bumps the change epoch.
fn epoch_triggers(signals: &[Signal]) -> String {
    let mut sql = String::new();
    for s in signals {
        let when = s.when.map(|w| format!(" WHEN {w}")).unwrap_or_default();
        sql.push_str(&format!(
            "CREATE TRIGGER {} AFTER {} ON {}{when}\nBEGIN\n    {BUMP_EPOCH}\nEND;\n",
            s.sqlite_trigger,
            s.event.clause(),
            s.table
        ));
    }
    sql
}

impl Step {
    /// The migration as sqlx runs and records it.
    fn migration(self) -> Result<Migration, MigrateError> {
        let description = Cow::Borrowed(self.description);
        Ok(match self.sql {
            Sql::File(text) => Migration::new(
                self.version,
                description,
                MigrationType::Simple,
                text.into_sql_str(),
                false,
            ),
            Sql::Generated { build, recorded } => Migration {
                version: self.version,
                description,
                migration_type: MigrationType::Simple,
                sql: AssertSqlSafe(build()).into_sql_str(),
                checksum: Cow::Owned(hex::decode(recorded).map_err(|e| {
                    MigrateError::Source(
                        format!("recorded checksum of version {}: {e}", self.version).into(),
                    )
                })?),
                no_tx: false,
            },
        })
    }
}

/// The migrations of `backend`, in version order.
pub(super) fn migrator(backend: Backend) -> Result<Migrator, MigrateError> {
    let migrations = STEPS
        .iter()
        .filter(|s| s.on.includes(backend))
        .map(|s| s.migration())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Migrator::with_migrations(migrations))
}

/// The newest migration version of `backend`: a store is migrated when it recorded it.
pub(crate) fn latest_version(backend: Backend) -> i64 {
    STEPS
        .iter()
        .filter(|s| s.on.includes(backend))
        .map(|s| s.version)
        .max()
        .unwrap_or(0)
}

/// The SQL of `version` on `backend`.
#[cfg(test)]
fn migration_sql(backend: Backend, version: i64) -> Option<String> {
    let step = STEPS
        .iter()
        .find(|s| s.version == version && s.on.includes(backend))?;
    Some(match step.sql {
        Sql::File(text) => text.to_string(),
        Sql::Generated { build, .. } => build(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex SHA-384 of each generated migration's SQL as released. A change here means existing
    /// databases would run other SQL than new ones: add a new version instead.
    const GENERATED: [(i64, &str); 12] = [
        (
            702,
            "0cf2b0da9a83412ac12dea74797f5ae11ef4bafa3ec2f0d4c848f7c4c1c00b96796cbc2701476586f31353368e5e0365",
        ),
        (
            3,
            "c48bf269d0b49d8b615af10622fac47ff4d4b543f4cf9ac49b8abc73e38203ab969ab3087555a5e47357176558d4ad4e",
        ),
        (
            6,
            "0ed0b9e4dcbc5ed45e7d26409be1ba5a0611fb37da4ec8219ae8bfbaa626bd1e6df913a87c45d655d27578f80e6a4e6c",
        ),
        (
            9,
            "096bab6fbccf9957515f75f547edfafa58815b87d8b0f0680110ded835b2a1a929a8006889bc412774611ce9ea81d5a0",
        ),
        (
            12,
            "dd34bb7622ff77677d8e8524dee109232b8875045b6888b7a64b1523b1e7afdb5c5dea03f216e2694362b36894f9978e",
        ),
        (
            13,
            "9ff0ad2658245f7e4ed7944708a2d03ed08391e8c46e8bcf1cb559df29d0bfc7e23415338a84a5f328a798b70d1dd297",
        ),
        (
            14,
            "6f8cea50f29d27ca68516514eeabe0339790af5d4254ef18e15bc8b3a39330bbfe6c0453300a536c180c56bdc2d688bd",
        ),
        (
            202,
            "70750f93582159ab644c7b83942a7d8f5e1835a5eb7d7e398d3b7a44518c9c1bca0ad5ec68956dd2e45cd24f15b8c016",
        ),
        (
            301,
            "c2b278e634a9cffea931fcc440e6232380371cae480f06709a45c6cb872f0cc68daacc8bde57ece976c3cd2f0bd2828d",
        ),
        (
            501,
            "05d154e9f08c4376d494c2f7e5d453de88ee627b6ce52ec433b739c78c10b8a66f415cd24071cee9383cda290fa26c54",
        ),
        (
            503,
            "984a2698934cd3db69da9897f33e8c02aa77c705775bdf02795d4823c6e3ad79e1453b8f881c0d5eba65e080f04f7784",
        ),
        (
            803,
            "6057ae851aeaa4a223593c333a7e7672b1fad2d10047fba86af6c872accd71bfe88b93232c17a9dd730111bbf87ddc46",
        ),
    ];

    fn sha384_hex(text: &str) -> String {
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, text.as_bytes()).as_ref())
    }

    #[test]
    fn generated_migrations_are_frozen() {
        for (version, expected) in GENERATED {
            let step = STEPS.iter().find(|s| s.version == version).unwrap();
            let Sql::Generated { build, .. } = step.sql else {
                panic!("version {version} is not generated");
            };
            let sql = build();
            assert_eq!(
                sha384_hex(&sql),
                expected,
                "version {version} is released: its SQL must not change (add a new version):\n{sql}"
            );
        }
        let generated = STEPS
            .iter()
            .filter(|s| matches!(s.sql, Sql::Generated { .. }))
            .count();
        assert_eq!(generated, GENERATED.len());
    }

    #[test]
    fn versions_ascend_and_every_backend_migrates() {
        for pair in STEPS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        // The versions databases of each backend have recorded since they shipped.
        for (backend, versions) in [
            (
                Backend::Sqlite,
                vec![
                    1, 2, 4, 5, 7, 8, 10, 11, 13, 200, 203, 204, 300, 500, 502, 600, 700, 701, 800,
                    801, 1001, 1300, 1302, 1500, 1801, 1900,
                ],
            ),
            (
                Backend::Postgres,
                vec![
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 201, 202, 203, 204, 300, 301, 500,
                    501, 502, 503, 600, 700, 701, 702, 800, 802, 803, 1000, 1001, 1002, 1301, 1303,
                    1304, 1305, 1500, 1501, 1600, 1700, 1800, 1802,
                ],
            ),
        ] {
            let m = migrator(backend).unwrap();
            assert_eq!(m.iter().map(|m| m.version).collect::<Vec<_>>(), versions);
            for migration in m.iter() {
                assert_eq!(migration.checksum.len(), 48, "SHA-384");
            }
        }
    }

    #[test]
    fn rls_covers_each_table_once() {
        let mut covered: Vec<&str> = Vec::new();
        for step in STEPS
            .iter()
            .filter(|s| s.description.contains("row level security"))
        {
            let sql = migration_sql(Backend::Postgres, step.version).unwrap();
            covered.extend(
                TENANT_TABLES
                    .iter()
                    .filter(|t| sql.contains(&format!("CREATE POLICY tenant_isolation ON {t} "))),
            );
        }
        covered.sort_unstable();
        let mut all = TENANT_TABLES.to_vec();
        all.sort_unstable();
        assert_eq!(covered, all);
    }
}
