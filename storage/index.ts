// storage/: durable state on one node — the Store over level, and images.
// The public surface: interfaces, factory functions and error classes.

export { openStore, STORE_SCHEMA_VERSION } from './store.ts'
export type {
  BatchOp, BuiltinSublevels, CorruptRecord, ListOptions, ListResult, OpenStoreInit, Store, StoreEntry,
  StoreStats, SublevelOptions, Table, Transaction
} from './store.ts'

export { createImageStore, HOST_IMAGE, IMAGE_NAME_RE, validateImageName } from './images.ts'
export type { CleanupResult, ImageStore, ImageStoreInit, ImportImageOptions, InUse, RemoveImageOptions } from './images.ts'
export type { ImportPhase, ImportProgress } from './image-import.ts'

export {
  BIND_OPTS, CONTAINER_STATES, IMAGE_FORMATS, RESTART_POLICIES, validateContainerRecord, validateImageRecord
} from './records.ts'
export type { ContainerRecord, PortSpec, ProxySpec, ImageBind, ImageConfig, ImageFormat, ImageRecord, Validator } from './records.ts'

export {
  AbortError, BerthError, ImageBuiltinError, ImageExistsError, ImageFormatError, ImageImportError, ImageInUseError,
  ImageNotFoundError, ImageSourceNotFoundError, InvalidNameError, isBerthError, NameInUseError, StoreClosedError,
  StoreCorruptRecordError, StoreError, StoreInvalidRecordError, StoreLockedError, StoreSchemaError
} from './errors.ts'
export type { BerthErrorOptions } from './errors.ts'
