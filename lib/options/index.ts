/** The options schema (defaults + checks) shared by the API, the CLI, the service and the workers. */
export * from './checks';
export * from './detector';
