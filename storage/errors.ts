// Errors a person can meet carry a stable `code` and a `hint` (STYLE.md). Tests assert on `code`.
// `BerthError` is the base for every layer: node/ and cluster/ import it from storage/index.ts.

export interface BerthErrorOptions {
  hint?: string
  /** process exit status the CLI should use; undefined = the CLI's default (1) */
  exitCode?: number
  cause?: unknown
  /** what was being done, e.g. the path or key involved */
  path?: string
  key?: string
}

export class BerthError extends Error {
  readonly code: string
  readonly hint: string | undefined
  readonly exitCode: number | undefined
  readonly path: string | undefined
  readonly key: string | undefined

  constructor (code: string, message: string, opts: BerthErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = new.target.name
    this.code = code
    this.hint = opts.hint
    this.exitCode = opts.exitCode
    this.path = opts.path
    this.key = opts.key
  }

  /** `CODE: message; hint` — the form the CLI prints */
  toDisplayString (): string {
    return `${this.code}: ${this.message}${this.hint === undefined ? '' : `; ${this.hint}`}`
  }
}

export const isBerthError = (err: unknown): err is BerthError => err instanceof BerthError

// ---- generic -------------------------------------------------------------------------------

export class AbortError extends BerthError {
  static readonly CODE = 'BERTH_ERR_ABORTED'
  constructor (what: string, opts: BerthErrorOptions = {}) {
    super(AbortError.CODE, `${what}: aborted`, { exitCode: 130, ...opts })
  }
}

export class InvalidNameError extends BerthError {
  static readonly CODE = 'BERTH_ERR_INVALID_NAME'
  constructor (kind: string, name: string, rule: string) {
    super(InvalidNameError.CODE, `invalid ${kind} name ${JSON.stringify(name)}`, { hint: rule, exitCode: 2 })
  }
}

// ---- store ---------------------------------------------------------------------------------

/** Base of the store's errors; `code` says which condition. */
export class StoreError extends BerthError {
  static readonly CODE: string = 'BERTH_ERR_STORE'
  constructor (message: string, opts: BerthErrorOptions & { code?: string } = {}) {
    super(opts.code ?? StoreError.CODE, message, opts)
  }
}

export class StoreSchemaError extends StoreError {
  static override readonly CODE = 'BERTH_ERR_STORE_SCHEMA'
  readonly found: number
  readonly known: number
  constructor (path: string, found: number, known: number) {
    super(`store ${path} has schema version ${found}, this berth knows up to ${known}`, {
      code: StoreSchemaError.CODE,
      path,
      hint: 'it was written by a newer berth; run that version (or newer) of berthd on this data dir'
    })
    this.found = found
    this.known = known
  }
}

export class StoreLockedError extends StoreError {
  static override readonly CODE = 'BERTH_ERR_STORE_LOCKED'
  constructor (path: string, cause: unknown) {
    super(`store ${path} is in use by another process`, {
      code: StoreLockedError.CODE, path, cause,
      hint: 'another berthd is running on this data dir; stop it or pick another --data-dir'
    })
  }
}

export class StoreCorruptRecordError extends StoreError {
  static override readonly CODE = 'BERTH_ERR_STORE_CORRUPT'
  readonly sublevel: string
  constructor (sublevel: string, key: string, reason: string) {
    super(`corrupt record ${sublevel}/${key}: ${reason}`, {
      code: StoreCorruptRecordError.CODE, key,
      hint: 'the record is skipped by listings; delete or rewrite it'
    })
    this.sublevel = sublevel
  }
}

/** A caller tried to write a value that does not pass the sublevel's validator (a bug). */
export class StoreInvalidRecordError extends StoreError {
  static override readonly CODE = 'BERTH_ERR_STORE_INVALID_RECORD'
  constructor (sublevel: string, key: string, reason: string) {
    super(`refusing to write invalid record ${sublevel}/${key}: ${reason}`, { code: StoreInvalidRecordError.CODE, key })
  }
}

export class StoreClosedError extends StoreError {
  static override readonly CODE = 'BERTH_ERR_STORE_CLOSED'
  constructor (path: string) {
    super(`store ${path} is closed`, { code: StoreClosedError.CODE, path })
  }
}

export class NameInUseError extends BerthError {
  static readonly CODE = 'BERTH_ERR_NAME_IN_USE'
  readonly id: string
  constructor (name: string, id: string) {
    super(NameInUseError.CODE, `the name ${JSON.stringify(name)} is in use by container ${id}`, {
      hint: 'pick another --name, or remove that container first (berth rm)', exitCode: 1
    })
    this.id = id
  }
}

// ---- images --------------------------------------------------------------------------------

export class ImageNotFoundError extends BerthError {
  static readonly CODE = 'BERTH_ERR_IMAGE_NOT_FOUND'
  constructor (name: string) {
    super(ImageNotFoundError.CODE, `no image ${JSON.stringify(name)}`, { hint: 'berth image ls lists them' })
  }
}

export class ImageExistsError extends BerthError {
  static readonly CODE = 'BERTH_ERR_IMAGE_EXISTS'
  constructor (name: string) {
    super(ImageExistsError.CODE, `an image named ${JSON.stringify(name)} already exists`, {
      hint: `pick another name, or remove it first (berth image rm ${name})`
    })
  }
}

export class ImageBuiltinError extends BerthError {
  static readonly CODE = 'BERTH_ERR_IMAGE_BUILTIN'
  constructor (name: string) {
    super(ImageBuiltinError.CODE, `image ${JSON.stringify(name)} is built in and cannot be removed or replaced`, {
      hint: 'built-in images are made by berthd itself'
    })
  }
}

export class ImageInUseError extends BerthError {
  static readonly CODE = 'BERTH_ERR_IMAGE_IN_USE'
  constructor (name: string) {
    super(ImageInUseError.CODE, `image ${JSON.stringify(name)} is used by a container`, {
      hint: 'remove the containers that use it first (berth ps -a lists them)'
    })
  }
}

export class ImageSourceNotFoundError extends BerthError {
  static readonly CODE = 'BERTH_ERR_IMAGE_SOURCE_NOT_FOUND'
  constructor (source: string, cause?: unknown) {
    super(ImageSourceNotFoundError.CODE, `cannot read image source ${source}`, {
      path: source, cause, hint: 'give a directory, a .tar, a .tar.gz, an OCI archive or a docker save tarball'
    })
  }
}

export class ImageFormatError extends BerthError {
  static readonly CODE = 'BERTH_ERR_IMAGE_FORMAT'
  constructor (source: string, detail: string) {
    super(ImageFormatError.CODE, `${source}: ${detail}`, {
      path: source,
      hint: 'supported: a directory, a tar, a gzip-compressed tar, an OCI image layout tarball (skopeo copy … oci-archive:), a docker save tarball'
    })
  }
}

export class ImageImportError extends BerthError {
  static readonly CODE = 'BERTH_ERR_IMAGE_IMPORT'
  constructor (source: string, detail: string, cause?: unknown) {
    super(ImageImportError.CODE, `importing ${source}: ${detail}`, {
      path: source, cause, hint: 'the source is damaged or unsafe; nothing was imported'
    })
  }
}
