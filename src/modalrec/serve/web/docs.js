// The API reference page (GET /docs): reads the service's own openapi.json and renders it, offline.
// Plain JavaScript, no framework, no build step. The DOM is built with createElement and textContent only:
// no string from the spec is ever parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const METHODS = ["get", "put", "post", "patch", "delete", "head", "options", "trace"];
  const SCHEMA_PREFIX = "#/components/schemas/";
  const MAX_DEPTH = 6; // nested objects expanded inline before they become links
  const CONSTRAINTS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties"];
  let spec = {};
  const usedIds = new Set();

  // -- small DOM helpers ---------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // A unique element id made of safe characters only (it goes into href="#...").
  function anchor(prefix, name) {
    const slug = String(name).toLowerCase().replace(/[^a-z0-9_]+/g, "-").replace(/^-+|-+$/g, "");
    const base = prefix + "-" + (slug || "x");
    let id = base;
    for (let n = 2; usedIds.has(id); n++) id = base + "-" + n;
    usedIds.add(id);
    return id;
  }

  const link = (id, ...children) => el("a", { href: "#" + id }, ...children);

  // Text and its `code` (or ``code``) spans as nodes (split() puts the two capture groups at i % 3 = 1, 2).
  function inline(text) {
    const nodes = [];
    String(text).split(/``([^`]+)``|`([^`]+)`/).forEach((part, i) => {
      if (part) nodes.push(i % 3 === 0 ? document.createTextNode(part) : el("code", { text: part }));
    });
    return nodes;
  }

  // Paragraphs (split at blank lines) with code spans.
  function prose(text, cls) {
    if (typeof text !== "string" || !text.trim()) return [];
    return text.trim().split(/\n\s*\n/).map((para) => el("p", { class: cls || "prose" }, inline(para)));
  }

  // A path that may wrap after each "/" on a narrow screen (the text stays the path itself).
  function pathCode(path) {
    const code = el("code", { class: "op-path", "data-testid": "op-path" });
    String(path).split(/(?=\/)/).forEach((part, i) => {
      if (i) code.append(el("wbr"));
      code.append(document.createTextNode(part));
    });
    return code;
  }

  // -- schemas -------------------------------------------------------------------------------

  const schemas = () => (spec.components && spec.components.schemas) || {};

  // A parameter, request body or response given as {"$ref": "#/components/<kind>/<name>"}: the object itself.
  function component(obj, kind) {
    const prefix = "#/components/" + kind + "/";
    if (!obj || typeof obj.$ref !== "string") return obj || {};
    const name = obj.$ref.startsWith(prefix) ? obj.$ref.slice(prefix.length) : "";
    return (spec.components && spec.components[kind] && spec.components[kind][name]) || {};
  }

  function refName(ref) {
    if (typeof ref !== "string" || !ref.startsWith(SCHEMA_PREFIX)) return null;
    let name = ref.slice(SCHEMA_PREFIX.length);
    try {
      name = decodeURIComponent(name);
    } catch (e) {
      // not percent-encoded after all: the name as written
    }
    return name.replace(/~1/g, "/").replace(/~0/g, "~");
  }

  function resolve(schema) {
    let s = schema;
    for (let n = 0; s && typeof s === "object" && s.$ref && n < 20; n++) s = schemas()[refName(s.$ref)];
    return s && typeof s === "object" ? s : {};
  }

  const alternatives = (s) => (Array.isArray(s.anyOf) && s.anyOf) || (Array.isArray(s.oneOf) && s.oneOf) || null;
  const isNull = (s) => s && s.type === "null";

  function typeText(s) {
    if (!s || typeof s !== "object") return "any";
    if (s.$ref) return refName(s.$ref) || String(s.$ref);
    const alts = alternatives(s);
    if (alts) return alts.map(typeText).join(" | ");
    if (Array.isArray(s.allOf) && s.allOf.length === 1) return typeText(s.allOf[0]);
    if (s.const !== undefined) return JSON.stringify(s.const);
    let t = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
    if (t === "array") {
      const inner = typeText(s.items);
      return "array of " + (inner.includes(" | ") ? "(" + inner + ")" : inner);
    }
    if (!t) t = s.properties ? "object" : "any";
    if (t === "object" && s.additionalProperties && typeof s.additionalProperties === "object") {
      t = "object of " + typeText(s.additionalProperties);
    }
    if (s.format) t += " (" + s.format + ")";
    else if (s.contentMediaType) t += " (" + s.contentMediaType + ")";
    return t;
  }

  const show = (v) => (typeof v === "string" ? v : JSON.stringify(v));

  // The bounds a schema states, as short "keyword value" strings (those of array items and of the
  // non-null alternatives too: a nullable integer's range sits inside its anyOf).
  function constraints(s, prefix) {
    if (!s || typeof s !== "object" || s.$ref) return [];
    const out = [];
    for (const key of CONSTRAINTS) if (s[key] !== undefined) out.push(prefix + key + " " + show(s[key]));
    if (Array.isArray(s.enum)) out.push(prefix + "enum " + s.enum.map(show).join(" | "));
    const alts = alternatives(s);
    if (alts) {
      const real = alts.filter((a) => !isNull(a));
      for (const a of real) out.push(...constraints(a, prefix + (real.length > 1 ? typeText(a) + ": " : "")));
    }
    if (s.type === "array") out.push(...constraints(s.items, prefix + "each item: "));
    return out;
  }

  function chips(s, extra) {
    const items = [...(extra || []), ...constraints(s, "")];
    if (s && s.default !== undefined) items.push("default " + show(s.default));
    if (!items.length) return null;
    return el("ul", { class: "chips", "aria-label": "constraints" },
      items.map((text) => el("li", { class: "chip", "data-testid": "constraint", text })));
  }

  // The object schemas inside a schema (itself, array items, alternatives), to show their fields.
  function objectsIn(s) {
    if (!s || typeof s !== "object") return [];
    if (s.$ref) return resolve(s).properties ? [s] : [];
    const alts = alternatives(s);
    if (alts) return alts.flatMap(objectsIn);
    if (s.type === "array") return objectsIn(s.items);
    if (s.properties) return [s];
    if (s.additionalProperties && typeof s.additionalProperties === "object") return objectsIn(s.additionalProperties);
    return [];
  }

  const schemaIds = new Map(); // schema name -> its anchor in the Schemas section
  const tagAnchors = new Map(); // tag -> its section's anchor

  function schemaLink(name) {
    const id = schemaIds.get(name);
    const code = el("code", { class: "schema-name", "data-testid": "schema-name", text: name });
    return id ? link(id, code) : code;
  }

  const requiredMark = (required) =>
    (required ? el("span", { class: "req", text: "required" }) : el("span", { class: "opt", text: "optional" }));

  // An object's fields, nested objects expanded (ctx.seen stops a schema that contains itself).
  function fieldList(schema, ctx) {
    const s = resolve(schema);
    const required = new Set(Array.isArray(s.required) ? s.required : []);
    const props = Object.entries(s.properties || {});
    const list = el("ul", { class: "fields" },
      props.map(([name, prop]) => field(name, prop, required.has(name), ctx)));
    if (!props.length) list.append(el("li", { class: "field hint", text: "no fields" }));
    if (s.additionalProperties === false) list.append(el("li", { class: "field hint", text: "no other fields" }));
    return list;
  }

  function field(name, prop, required, ctx) {
    const head = el("div", { class: "field-head" },
      el("code", { class: "field-name", "data-testid": "field-name", text: name }),
      el("span", { class: "type", "data-testid": "field-type", text: typeText(prop) }),
      requiredMark(required));
    const item = el("li", { class: "field", "data-testid": "field" }, head, prose(prop && prop.description));
    const items = prop && prop.type === "array" && prop.items;
    if (items && items.description) item.append(...prose("Each item: " + items.description));
    const c = chips(prop);
    if (c) item.append(c);
    for (const sub of objectsIn(prop)) item.append(nested(sub, ctx));
    return item;
  }

  // A nested object: its name (a link to the Schemas section) and, unless too deep, its fields.
  function nested(schema, ctx) {
    const name = refName(schema.$ref);
    const box = el("div", { class: "nested" });
    if (name) {
      box.append(el("p", { class: "nested-name" }, schemaLink(name), el("span", { class: "type", text: " object" })));
    }
    if (name && (ctx.seen.has(name) || ctx.depth >= MAX_DEPTH || !ctx.expand)) return box;
    if (name) box.append(...prose(resolve(schema).description, "prose hint"));
    const inner = { ...ctx, depth: ctx.depth + 1, seen: new Set(ctx.seen).add(name || "") };
    box.append(fieldList(schema, inner));
    return box;
  }

  // A body or response schema: its type line, then the fields of the objects in it.
  function schemaBlock(schema, ctx) {
    const name = refName(schema && schema.$ref);
    const s = resolve(schema);
    const block = el("div", { class: "schema" });
    const line = el("p", { class: "schema-line" }, name ? schemaLink(name) : null,
      el("span", { class: "type", text: (name ? " " : "") + typeText(name ? s : schema) }));
    const more = typeof s.description === "string" && s.description.trim().includes("\n");
    if (!ctx.bare || !s.properties) block.append(line, ...prose(s.description, "prose hint"));
    else if (more) block.append(...prose(s.description, "prose hint"));  // the summary shows its first line
    const c = chips(s);
    if (c) block.append(c);
    const ctx1 = { ...ctx, bare: false, seen: new Set(ctx.seen).add(name || "") };
    if (s.properties) block.append(fieldList(s, ctx1));
    else for (const sub of objectsIn(s)) block.append(nested(sub, ctx1));
    return block;
  }

  function firstExample(media, schema) {
    if (media && media.example !== undefined) return media.example;
    if (media && media.examples && typeof media.examples === "object") {
      const first = Object.values(media.examples)[0];
      if (first && first.value !== undefined) return first.value;
    }
    const s = resolve(schema);
    if (Array.isArray(s.examples) && s.examples.length) return s.examples[0];
    return s.example;
  }

  // -- operations ----------------------------------------------------------------------------

  function parameterList(params) {
    return el("ul", { class: "fields" }, params.map((p) => {
      const param = component(p, "parameters");
      const schema = param.schema || {};
      const head = el("div", { class: "field-head" },
        el("code", { class: "field-name", "data-testid": "param-name", text: param.name }),
        el("span", { class: "type", text: typeText(schema) }),
        requiredMark(param.required));
      return el("li", { class: "field", "data-testid": "parameter" }, head,
        prose(param.description || schema.description), chips(schema, ["in " + param.in]));
    }));
  }

  function requestBody(body) {
    const part = el("section", { class: "op-part", "data-testid": "request-body" },
      el("h4", { text: "Request body" + (body.required ? " (required)" : " (optional)") }), prose(body.description));
    for (const [type, media] of Object.entries(body.content || {})) {
      part.append(el("p", { class: "media-type" }, el("code", { text: type })));
      part.append(schemaBlock(media.schema || {}, { expand: true, depth: 0, seen: new Set() }));
      const example = firstExample(media, media.schema);
      if (example !== undefined) {
        part.append(el("p", { class: "hint", text: "Example" }),
          el("pre", { class: "example", text: JSON.stringify(example, null, 2) }));
      }
    }
    return part;
  }

  // The schema of each media type, media types with the same schema on one line.
  function responseContent(content) {
    const bySchema = new Map();
    for (const [type, media] of Object.entries(content || {})) {
      const schema = (media && media.schema) || {};
      const key = schema.$ref || typeText(schema);
      if (!bySchema.has(key)) bySchema.set(key, { schema, types: [] });
      bySchema.get(key).types.push(type);
    }
    return [...bySchema.values()].map(({ schema, types }) => {
      const name = refName(schema.$ref);
      return el("span", { class: "response-schema" }, el("span", { class: "hint", text: types.join(", ") + ": " }),
        name ? schemaLink(name) : el("span", { class: "type", text: typeText(schema) }));
    });
  }

  function responses(resps) {
    const rows = Object.entries(resps || {}).map(([code, r]) => {
      const resp = component(r, "responses");
      return el("li", { class: "response", "data-testid": "response" },
        el("div", { class: "field-head" },
          el("span", { class: "status-code status-" + String(code).charAt(0) + "xx", text: code }),
          el("span", { text: resp.description || "" }), responseContent(resp.content)));
    });
    return el("section", { class: "op-part" }, el("h4", { text: "Responses" }), el("ul", { class: "fields" }, rows));
  }

  const methodBadge = (method) => el("span", { class: "method method-" + method, text: method.toUpperCase() });

  function operation(op) {
    const o = op.spec;
    const article = el("article", { class: "op", id: op.id, "data-testid": "operation",
      "data-method": op.method, "data-path": op.path },
      el("h3", { class: "op-head" }, methodBadge(op.method), pathCode(op.path)),
      o.summary ? el("p", { class: "summary" }, inline(o.summary)) : null,
      o.deprecated ? el("p", { class: "error", text: "Deprecated." }) : null,
      prose(o.description));
    const params = [...(op.pathParams || []), ...(o.parameters || [])];
    if (params.length) {
      article.append(el("section", { class: "op-part" }, el("h4", { text: "Parameters" }), parameterList(params)));
    }
    if (o.requestBody) article.append(requestBody(component(o.requestBody, "requestBodies")));
    article.append(responses(o.responses));
    return article;
  }

  // Every operation, grouped by its first tag (in the order of spec.tags, then of appearance).
  function groupByTag() {
    const groups = new Map();
    for (const t of Array.isArray(spec.tags) ? spec.tags : []) if (t && t.name) groups.set(t.name, []);
    for (const [path, item] of Object.entries(spec.paths || {})) {
      if (!item || typeof item !== "object") continue;
      for (const method of METHODS) {
        const o = item[method];
        if (!o || typeof o !== "object") continue;
        const tag = (Array.isArray(o.tags) && o.tags[0]) || "other";
        if (!groups.has(tag)) groups.set(tag, []);
        groups.get(tag).push({ path, method, spec: o, pathParams: item.parameters,
          id: anchor("op", o.operationId || method + "-" + path) });
      }
    }
    return [...groups.entries()].filter(([, ops]) => ops.length);
  }

  const tagInfo = (name) => (Array.isArray(spec.tags) ? spec.tags : []).find((t) => t && t.name === name) || {};

  // -- the page ------------------------------------------------------------------------------

  function renderIntro() {
    const info = spec.info || {};
    const name = typeof info.title === "string" && info.title.trim() ? info.title.trim() : "HTTP";
    const title = /\bapi\b/i.test(name) ? name : name + " API";
    $("api-title").textContent = title;
    document.title = title + " reference";
    $("api-version").textContent = ["version " + (info.version || "?"), spec.openapi ? "OpenAPI " + spec.openapi : ""]
      .filter(Boolean).join(" · ");
    const intro = $("api-intro");
    intro.append(...prose(info.description));
    intro.hidden = !intro.childElementCount;
  }

  function renderToc(groups, schemaNames) {
    const list = el("ol", { class: "toc-list" });
    for (const [tag, ops] of groups) {
      list.append(el("li", {}, link(tagAnchors.get(tag), tag),
        el("ol", {}, ops.map((op) => el("li", {},
          link(op.id, methodBadge(op.method), " ", el("code", { text: op.path })),
          op.spec.summary ? el("span", { class: "hint" }, " ", inline(op.spec.summary)) : null)))));
    }
    if (schemaNames.length) list.append(el("li", {}, link("schemas", "Schemas")));
    $("toc").append(list);
    $("toc").hidden = false;
  }

  const firstLine = (text) => text.trim().split("\n")[0];

  // Every schema of components.schemas, folded (a link to one opens it); nested objects are links there.
  function renderSchemas(names) {
    const section = el("section", { class: "tag-section", id: "schemas", "aria-labelledby": "schemas-heading" },
      el("h2", { id: "schemas-heading", text: "Schemas" }),
      el("p", { class: "hint", text: "The bodies the operations take and return. Open one to see its fields." }));
    for (const name of names) {
      const s = resolve({ $ref: SCHEMA_PREFIX + encodeURIComponent(name) });
      section.append(el("details", { class: "op schema-box", id: schemaIds.get(name), "data-testid": "schema" },
        el("summary", {}, el("code", { class: "schema-name", text: name }),
          typeof s.description === "string" ? el("span", { class: "hint" }, " ", inline(firstLine(s.description)))
            : null),
        schemaBlock({ $ref: SCHEMA_PREFIX + encodeURIComponent(name) },
          { expand: false, bare: true, depth: 0, seen: new Set() })));
    }
    return section;
  }

  // Go to the element named in the URL's #fragment, unfolding the schema it is in.
  function showTarget() {
    let id = "";
    try {
      id = decodeURIComponent(location.hash.slice(1));
    } catch (e) {
      return;
    }
    const target = id ? document.getElementById(id) : null;
    if (!target) return;
    const box = target.closest("details");
    if (box) box.open = true;
    target.scrollIntoView();
  }

  function render() {
    renderIntro();
    const names = Object.keys(schemas());
    for (const name of names) schemaIds.set(name, anchor("schema", name));
    const groups = groupByTag();
    for (const [tag] of groups) tagAnchors.set(tag, anchor("tag", tag));
    const root = $("api-reference");
    for (const [tag, ops] of groups) {
      const heading = el("h2", { id: anchor("heading", tag), text: tag });
      root.append(el("section", { class: "tag-section", id: tagAnchors.get(tag), "data-testid": "tag-section",
        "aria-labelledby": heading.id }, heading, prose(tagInfo(tag).description, "prose hint"), ops.map(operation)));
    }
    if (names.length) root.append(renderSchemas(names));
    renderToc(groups, names);
  }

  // A click on a link to a folded schema unfolds it (also when the URL already names it: no hashchange then).
  function openLinkedSchema(event) {
    const a = event.target instanceof Element ? event.target.closest('a[href^="#"]') : null;
    const target = a ? document.getElementById(a.getAttribute("href").slice(1)) : null;
    const box = target ? target.closest("details") : null;
    if (box) box.open = true;
  }

  async function main() {
    const status = $("docs-status");
    try {
      const resp = await fetch("openapi.json", { headers: { Accept: "application/json" } });
      if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
      spec = await resp.json();
      if (!spec || typeof spec !== "object") throw new Error("not a JSON object");
      render();
      status.hidden = true;
      document.body.dataset.ready = "true";
      showTarget();
      window.addEventListener("hashchange", showTarget);
      document.addEventListener("click", openLinkedSchema);
    } catch (e) {
      status.textContent = "Could not load the API description (openapi.json): " + e.message;
      status.classList.add("error");
    }
  }

  main();
})();
