// Python's json.dumps(obj, sort_keys=True, separators=(',', ':')) for the curriculum spec, so that
// the client can recompute Curriculum.content_hash(). JSON numbers lose the int / float
// distinction, so the spec's float fields are named (every other number is written as an int).

const FLOAT_KEYS = new Set(['difficulty', 'discrimination', 'guess', 'slip', 'duration']);

/** float.__repr__: shortest round-trip digits; exponent form when exp < -4 or exp >= 16. */
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expStr] = x.toExponential().split('e'); // shortest digits, e.g. "-1.25e-5"
  const exp = Number(expStr);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  let body;
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    body = `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  } else if (exp < 0) {
    body = `0.${'0'.repeat(-exp - 1)}${digits}`;
  } else if (digits.length <= exp + 1) {
    body = `${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  } else {
    body = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  }
  return neg ? `-${body}` : body;
}

/** json.dumps(str) with ensure_ascii=True. */
export function pyString(s) {
  return JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function pyCanonical(value, key = null) {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return FLOAT_KEYS.has(key) ? pyFloatRepr(value) : String(value);
  if (typeof value === 'string') return pyString(value);
  if (Array.isArray(value)) return `[${value.map((v) => pyCanonical(v, key)).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${pyString(k)}:${pyCanonical(value[k], k)}`).join(',')}}`;
}
