/**
 * The `claims` fields (google.protobuf.Struct) on the wire, converted with @bufbuild/protobuf.
 *
 * ts-proto's generated Struct code assigns keys into plain objects, which silently drops a claim
 * named `__proto__` at any depth (the assignment sets the object's prototype instead). protobuf-es
 * keeps such a key as an own data property, so the client reads and writes `claims` with it and
 * lets the generated code handle every other field.
 */
import { type JsonObject, fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

/** Field number of `claims` in ValidateResponse. */
export const VALIDATE_RESPONSE_CLAIMS = 3;
/** Field number of `claims` in MintRequest. */
export const MINT_REQUEST_CLAIMS = 2;

/**
 * Splits a message's encoding into its other fields and the concatenated payloads of field
 * `fieldNumber` (a length-delimited field: repeated occurrences merge, as protobuf requires).
 */
export function takeField(bytes: Uint8Array, fieldNumber: number): { rest: Uint8Array; field: Uint8Array } {
  const reader = new BinaryReader(bytes);
  const rest: Uint8Array[] = [];
  const field: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [number, wireType] = reader.tag();
    if (number === fieldNumber && wireType === WireType.LengthDelimited) {
      field.push(reader.bytes());
    } else {
      reader.skip(wireType, number);
      rest.push(bytes.subarray(start, reader.pos));
    }
  }
  return { rest: concat(rest), field: concat(field) };
}

/** A Struct's encoding as JSON values; every key, `__proto__` included, is an own property. */
export function claimsFromBinary(bytes: Uint8Array): Record<string, unknown> {
  return toJson(StructSchema, fromBinary(StructSchema, bytes));
}

/**
 * `claims` encoded as field `fieldNumber` holding a Struct.
 *
 * @throws TypeError when a value is not JSON (undefined, a function, a bigint, NaN, ...).
 */
export function claimsField(fieldNumber: number, claims: Record<string, unknown>): Uint8Array {
  let struct: Uint8Array;
  try {
    struct = toBinary(StructSchema, fromJson(StructSchema, claims as JsonObject));
  } catch (error) {
    throw new TypeError(`claims must be JSON values: ${error instanceof Error ? error.message : String(error)}`);
  }
  return new BinaryWriter().tag(fieldNumber, WireType.LengthDelimited).bytes(struct).finish();
}

/** The parts, one after another. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
