//! The `forward` output: sends records to another listener (a cookbook
//! listener or another logrelay). Not built yet: a config that uses it is
//! refused at start-up with a clear message.
