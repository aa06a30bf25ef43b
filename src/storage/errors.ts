// Failures of the data directory itself (disk full, permissions): the API answers 507 naming the cause.
export class StorageError extends Error {}
