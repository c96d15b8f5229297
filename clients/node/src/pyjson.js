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

// ---- Python's formatting, for messages and explanations that must read the same in both runtimes ----

/** Exact decimal check: is |x| * 10^digits exactly halfway between two integers? */
function isHalfway(x, digits) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const expBits = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  let e = -1074;
  if (expBits !== 0) {
    mant |= 1n << 52n;
    e = expBits - 1075;
  }
  if (e >= 0) return false; // an integer
  const num = mant * 10n ** BigInt(digits);
  const den = 1n << BigInt(-e);
  return 2n * (num % den) === den;
}

/** format(x, f'.{digits}f'): the exact binary value rounded half to even. (toFixed rounds the
 * exact value too, but picks the larger magnitude on an exact tie.) */
export function pyFixed(x, digits) {
  const s = x.toFixed(digits);
  if (!Number.isFinite(x) || !isHalfway(x, digits)) return s;
  const neg = s.startsWith('-');
  const body = neg ? s.slice(1) : s;
  let n = BigInt(body.replace('.', ''));
  if (n % 2n === 0n) return s;
  n -= 1n; // toFixed rounded away from zero; half to even goes back down
  let t = n.toString().padStart(digits + 1, '0');
  if (digits > 0) t = `${t.slice(0, -digits)}.${t.slice(-digits)}`;
  return (neg ? '-' : '') + t;
}

/** format(x, 'g') (6 significant digits, trailing zeros dropped). */
export function pyG(x) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'nan' : (x > 0 ? 'inf' : '-inf');
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const [mant, expStr] = x.toExponential(5).split('e');
  const exp = Number(expStr);
  const strip = (s) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (exp < -4 || exp >= 6) return `${strip(mant)}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  return strip(pyFixed(x, 5 - exp));
}

/** repr() of a JSON value, as Python prints it in an error message. */
export function pyRepr(v) {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') return Number.isInteger(v) && Math.abs(v) < 1e16 ? String(v) : pyFloatRepr(v);
  if (typeof v === 'string') {
    if (v.includes("'") && !v.includes('"')) return `"${v}"`;
    return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  }
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  return `{${Object.entries(v).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
}

/** Python's truth value of a JSON value. */
export function pyTruthy(v) {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}
