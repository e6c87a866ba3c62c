package engine

// LoadMigrations exposes the migration loader to the external tests.
var LoadMigrations = loadMigrations

// NextDelay exposes the Maintainer's back-off rule to the external tests.
var NextDelay = nextDelay
