// Package configs owns braid's root configuration: one YAML file with
// ${NAME} and ${NAME:-default} environment expansion, decoded strictly
// (unknown fields are errors), filled with defaults and validated with every
// problem reported at once, each naming its field path and the bad value.
//
// It is the only package in braid that reads files or the environment, and it
// does both only in Load: the environment arrives as a lookup function
// (os.LookupEnv in main) so tests stay hermetic. Everything else receives a
// Config by value; convert.go turns a Config into the Config types of shard
// and router, which never import configs.
//
// Passwords are never printed. DSNs are stored as the DSN type, whose String,
// GoString, LogValue and MarshalText forms are redacted (RedactDSN); every error
// that shows a DSN shows it redacted; and as a last line of defence, every error
// returned by Load, Parse and Validate is scrubbed of the passwords found in
// the input. Environment values are never echoed, only variable names.
//
// The package must not open connections or start goroutines: a DSN is parsed
// to validate it, never dialled.
package configs
