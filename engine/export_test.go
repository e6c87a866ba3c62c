package engine

// LoadMigrations exposes the migration loader to the external tests.
var LoadMigrations = loadMigrations
