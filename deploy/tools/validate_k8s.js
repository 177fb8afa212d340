// Validates Kubernetes objects against the Kubernetes API's schemas, without a
// cluster:
//
//   kubectl kustomize deploy/k8s/overlays/gpu | (YAML to a JSON array) > objs.json
//   node deploy/tools/validate_k8s.js tools/npm/node_modules objs.json
//
// prints one JSON object per input object, in order:
//   {"apiVersion": ..., "kind": ..., "name": ..., "errors": ["...", ...]}
// and exits 0 when no object has an error, 1 when one has, 2 on bad usage.
//
// Two checks, both from npm packages generated from the official schemas
// (pinned in tools/npm/package.json):
//  1. the JSON schema: kubernetes-models (from Kubernetes' OpenAPI spec) and
//     @kubernetes-models/prometheus-operator (from the Operator's CRDs), whose
//     validate() checks types, required fields, enums and formats;
//  2. unknown fields, which those schemas let through (the API server drops
//     or, with strict validation, refuses them): every key must be a field of
//     its type as the packages' TypeScript declarations list them (the same
//     generator, the same schemas). A misspelt field is the usual mistake in
//     a manifest, and the one the schemas alone miss.
// An apiVersion/kind that neither package knows is an error, not a pass.
"use strict";

const fs = require("fs");
const path = require("path");

function modulePathFor(nodeModules, apiVersion) {
  if (apiVersion === "monitoring.coreos.com/v1") {
    return path.join(nodeModules, "@kubernetes-models/prometheus-operator", apiVersion);
  }
  return path.join(nodeModules, "kubernetes-models", apiVersion);
}

// ---- TypeScript declarations -> a tree of types (for unknown fields) ----
//
// The declarations are generated and regular: `export interface IX [extends
// TypeMeta] { "field"?: TYPE; ... }` and `export declare type IX = TYPE;`,
// with TYPE one of: a primitive, a string literal, a name imported from
// another declaration file, Array<TYPE>, an inline { ... } with fields and/or
// an index signature [key: string]: TYPE, or a union of these.

function tokenize(text) {
  text = text.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
  const tokens = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_$][\w$]*|-?\d+(?:\.\d+)?|=>|[{}()<>\[\];:,|?=.&*@/-])/g;
  let m;
  while ((m = re.exec(text)) !== null) tokens.push(m[1]);
  return tokens;
}

class Declarations {
  constructor(nodeModules) {
    this.nodeModules = nodeModules;
    this.files = new Map(); // path -> {imports, main}
  }

  // The main declared type of `file` (its first interface or type alias).
  mainType(file) {
    return this.load(file).main;
  }

  load(file) {
    if (this.files.has(file)) return this.files.get(file);
    const entry = { imports: new Map(), main: null, file };
    this.files.set(file, entry);
    const t = tokenize(fs.readFileSync(file, "utf8"));
    let i = 0;
    while (i < t.length) {
      if (t[i] === "import" && t[i + 1] === "{") {
        const names = [];
        i += 2;
        while (t[i] !== "}") {
          if (t[i] !== ",") names.push(t[i]);
          i++;
        }
        i++; // }
        if (t[i] === "from") {
          const spec = t[i + 1].slice(1, -1);
          for (const n of names) entry.imports.set(n, spec);
          i += 2;
        }
        continue;
      }
      if (entry.main === null && t[i] === "export" && t[i + 1] === "interface") {
        i += 3; // export interface IName
        let extendsTypeMeta = false;
        if (t[i] === "extends") {
          while (t[i] !== "{") {
            if (t[i] === "TypeMeta") extendsTypeMeta = true;
            i++;
          }
        }
        const parsed = this.parseType(t, i, entry);
        entry.main = parsed.type;
        if (extendsTypeMeta) {
          entry.main.fields.apiVersion = entry.main.fields.apiVersion || { kind: "any" };
          entry.main.fields.kind = entry.main.fields.kind || { kind: "any" };
        }
        i = parsed.next;
        continue;
      }
      if (entry.main === null && t[i] === "export" && t[i + 1] === "declare" && t[i + 2] === "type") {
        const parsed = this.parseType(t, i + 5, entry); // export declare type IName =
        entry.main = parsed.type;
        i = parsed.next;
        continue;
      }
      i++;
    }
    if (entry.main === null) throw new Error("no declaration in " + file);
    return entry;
  }

  resolve(spec, fromFile) {
    let base;
    if (spec.startsWith(".")) base = path.resolve(path.dirname(fromFile), spec);
    else base = path.join(this.nodeModules, spec);
    for (const candidate of [base + ".d.ts", path.join(base, "index.d.ts")]) {
      if (fs.existsSync(candidate)) return candidate;
    }
    throw new Error("cannot find declarations of " + spec + " (from " + fromFile + ")");
  }

  // Parses a type starting at t[i]; returns {type, next}.
  parseType(t, i, entry) {
    const branches = [];
    for (;;) {
      const p = this.parsePrimary(t, i, entry);
      branches.push(p.type);
      i = p.next;
      if (t[i] === "|") {
        i++;
        continue;
      }
      break;
    }
    if (branches.length === 1) return { type: branches[0], next: i };
    return { type: { kind: "union", branches }, next: i };
  }

  parsePrimary(t, i, entry) {
    const tok = t[i];
    let type;
    if (tok === "{") {
      type = { kind: "object", fields: {}, index: null };
      i++;
      while (t[i] !== "}") {
        if (t[i] === "[") {
          // [key: string]: TYPE;
          while (t[i] !== "]") i++;
          i += 2; // ] :
          const p = this.parseType(t, i, entry);
          type.index = p.type;
          i = p.next;
        } else {
          const name = t[i].replace(/^["']|["']$/g, "");
          i++;
          if (t[i] === "?") i++;
          i++; // :
          const p = this.parseType(t, i, entry);
          type.fields[name] = p.type;
          i = p.next;
        }
        if (t[i] === ";" || t[i] === ",") i++;
      }
      i++; // }
    } else if (tok === "Array" && t[i + 1] === "<") {
      const p = this.parseType(t, i + 2, entry);
      type = { kind: "array", items: p.type };
      i = p.next + 1; // >
    } else if (tok === "(") {
      const p = this.parseType(t, i + 1, entry);
      type = p.type;
      i = p.next + 1;
    } else if (tok[0] === '"' || tok[0] === "'" || /^-?\d/.test(tok)) {
      type = { kind: "any" };
      i++;
    } else if (["string", "number", "boolean", "any", "object", "null", "unknown", "true", "false"].includes(tok)) {
      type = { kind: "any" };
      i++;
    } else if (entry.imports.has(tok)) {
      type = { kind: "ref", file: this.resolve(entry.imports.get(tok), entry.file) };
      i++;
    } else {
      throw new Error("unsupported type '" + tok + "' in " + entry.file);
    }
    while (t[i] === "[" && t[i + 1] === "]") {
      type = { kind: "array", items: type };
      i += 2;
    }
    return { type, next: i };
  }

  deref(type) {
    while (type.kind === "ref") type = this.mainType(type.file);
    return type;
  }

  // Pushes "path: unknown field" for every key of `data` that `type` lacks.
  unknownFields(data, type, where, errors) {
    type = this.deref(type);
    if (data === null || typeof data !== "object") return;
    if (type.kind === "array") {
      if (Array.isArray(data)) data.forEach((d, k) => this.unknownFields(d, type.items, `${where}/${k}`, errors));
      return;
    }
    if (type.kind === "union") {
      const objects = type.branches.map((b) => this.deref(b)).filter((b) => b.kind === "object" || b.kind === "array");
      if (objects.length === 1) this.unknownFields(data, objects[0], where, errors);
      return;
    }
    if (type.kind !== "object" || Array.isArray(data)) return;
    for (const [key, value] of Object.entries(data)) {
      if (Object.prototype.hasOwnProperty.call(type.fields, key)) {
        this.unknownFields(value, type.fields[key], `${where}/${key}`, errors);
      } else if (type.index !== null) {
        this.unknownFields(value, type.index, `${where}/${key}`, errors);
      } else {
        errors.push(`${where}/${key}: unknown field "${key}"`);
      }
    }
  }
}

function validate(obj, nodeModules, decls) {
  const errors = [];
  const apiVersion = obj && obj.apiVersion;
  const kind = obj && obj.kind;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return ["not a Kubernetes object: apiVersion and kind must be strings"];
  }
  const dir = modulePathFor(nodeModules, apiVersion);
  let Model;
  try {
    Model = require(dir)[kind];
  } catch (e) {
    Model = undefined;
  }
  if (typeof Model !== "function") {
    return [`no schema for ${apiVersion} ${kind} (is it a real API version and kind?)`];
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    errors.push(String(e.message || e));
  }
  try {
    decls.unknownFields(obj, decls.mainType(path.join(dir, kind + ".d.ts")), "", errors);
  } catch (e) {
    errors.push("cannot check for unknown fields: " + String(e.message || e));
  }
  return errors;
}

function main() {
  const [nodeModules, input] = process.argv.slice(2);
  if (!nodeModules || !input) {
    process.stderr.write("usage: validate_k8s.js NODE_MODULES OBJECTS.json\n");
    process.exit(2);
  }
  const objects = JSON.parse(fs.readFileSync(input, "utf8"));
  if (!Array.isArray(objects)) {
    process.stderr.write("validate_k8s.js: the input must be a JSON array of objects\n");
    process.exit(2);
  }
  const decls = new Declarations(path.resolve(nodeModules));
  let failed = false;
  for (const obj of objects) {
    const errors = validate(obj, path.resolve(nodeModules), decls);
    if (errors.length) failed = true;
    process.stdout.write(JSON.stringify({
      apiVersion: obj && obj.apiVersion,
      kind: obj && obj.kind,
      name: obj && obj.metadata && obj.metadata.name,
      errors,
    }) + "\n");
  }
  process.exit(failed ? 1 : 0);
}

main();
