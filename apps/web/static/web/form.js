// The submit form, built from the chosen kind's input schema. A kind that takes an upload
// (an `upload_id` property: images.thumbnail) gets a file picker: the file goes to
// POST /api/v1/uploads as soon as it is chosen, and the job's payload carries the upload's id.
"use strict";

(function () {
  const JP = window.JobPage;
  const { $, el, api, showError, clearError } = JP;

  class FieldError extends Error {
    constructor(input, message) {
      super(message);
      this.input = input;
    }
  }

  let kinds = [];
  let fields = [];

  const isUpload = (name, schema) => schema && schema.type === "string" && /(^|_)upload_id$/.test(name);
  const isBase64 = (name, schema) => schema && schema.type === "string" && (schema.contentEncoding === "base64" || /_base64$/.test(name));

  // What widget a property gets; "json" (a raw JSON textarea) for anything else.
  function widgetFor(name, schema) {
    if (!schema || typeof schema !== "object") return "json";
    if (isUpload(name, schema)) return "upload";
    if (Array.isArray(schema.enum) && schema.enum.length) return "enum";
    if (schema.type === "array" && schema.items && schema.items.type === "integer" && !schema.items.enum) {
      return "integers";
    }
    return { number: "number", integer: "integer", boolean: "boolean", string: "string" }[schema.type] || "json";
  }

  // "Exactly one of" / "at least one of" a few properties: oneOf/anyOf branches that only list
  // required names. The form shows them as optional fields with a note; the API checks the rest.
  function alternatives(schema, labelOf) {
    const notes = [];
    for (const [keyword, words] of [["oneOf", "Give exactly one of"], ["anyOf", "Give at least one of"]]) {
      const branches = schema[keyword];
      if (branches === undefined) continue;
      const simple = Array.isArray(branches) && branches.every(
        (b) => b && typeof b === "object" && Object.keys(b).length === 1 && Array.isArray(b.required),
      );
      if (!simple) return null;
      notes.push(`${words}: ${branches.map((b) => b.required.map(labelOf).join(" and ")).join(", ")}.`);
    }
    return notes;
  }

  // A whole schema the per-property form cannot express: one JSON textarea for the payload.
  function needsRawPayload(schema) {
    if (!schema || typeof schema !== "object") return true;
    if (schema.type !== undefined && schema.type !== "object") return true;
    if (["allOf", "not", "if", "$ref", "patternProperties", "dependentRequired"].some((k) => k in schema)) return true;
    if (alternatives(schema, String) === null) return true;
    const hasProperties = schema.properties && Object.keys(schema.properties).length > 0;
    return !hasProperties && schema.additionalProperties !== false;
  }

  function constraintsHint(schema, widget) {
    const parts = [];
    const items = widget === "integers" ? schema.items : schema;
    if (items.minimum !== undefined && items.maximum !== undefined) parts.push(`${items.minimum} to ${items.maximum}`);
    else if (items.minimum !== undefined) parts.push(`at least ${items.minimum}`);
    else if (items.maximum !== undefined) parts.push(`at most ${items.maximum}`);
    if (widget === "integers") {
      parts.unshift("whole numbers separated by commas");
      if (schema.maxItems !== undefined) parts.push(`up to ${schema.maxItems} of them`);
    }
    if (widget === "json") parts.push("JSON");
    return parts.join(", ");
  }

  // A file picker whose file is uploaded at once; the field's value is the upload's id.
  function uploadField(name, schema, required, id, label) {
    const hintId = `${id}-hint`;
    const input = el("input", { id, name, type: "file", required, "aria-describedby": hintId });
    const state = el("p", { class: "hint upload-state", id: `${id}-state`, "aria-live": "polite" });
    const errorBox = el("div", { class: "error", role: "alert", hidden: true });
    let upload = { id: null, pending: null, error: null };
    input.addEventListener("change", async () => {
      const file = input.files[0];
      clearError(errorBox);
      input.removeAttribute("aria-invalid");
      if (!file) {
        upload = { id: null, pending: null, error: null };
        state.textContent = "";
        return;
      }
      const form = new FormData();
      form.append("file", file, file.name);
      const mine = { id: null, pending: null, error: null };
      upload = mine;
      state.textContent = `Uploading ${file.name} (${JP.bytes(file.size)})…`;
      mine.pending = api("POST", JP.urls.uploads, { form, timeoutMs: 120000 });
      try {
        const { data } = await mine.pending;
        mine.id = data.id;
        if (upload === mine) state.textContent = `Uploaded ${file.name} (${JP.bytes(data.size)}).`;
      } catch (err) {
        mine.error = err;
        if (upload !== mine) return;
        state.textContent = "";
        input.setAttribute("aria-invalid", "true");
        showError(errorBox, err);
      } finally {
        mine.pending = null;
      }
    });
    const text = `A file to upload (${label})`;
    const node = el(
      "div",
      { class: "field" },
      el("label", { for: id }, text, required ? " (required)" : ""),
      input,
      el("p", { class: "hint", id: hintId, text: schema.description || "The job is given the upload's id." }),
      state,
      errorBox,
    );
    const read = () => {
      if (upload.pending) throw new FieldError(input, `${label}: the file is still uploading; submit again in a moment.`);
      if (upload.error) throw new FieldError(input, `${label}: the file could not be uploaded (${upload.error.message}).`);
      return upload.id || undefined;
    };
    return { name, input, node, read };
  }

  function buildField(name, schema, required, index) {
    const widget = widgetFor(name, schema);
    const id = `field-${index}`;
    const label = schema.title || name;
    if (widget === "upload") return uploadField(name, schema, required, id, label);
    const hintId = `${id}-hint`;
    const hintText = [schema.description, constraintsHint(schema, widget)].filter(Boolean).join(" — ");
    const common = { id, name, "aria-describedby": hintText ? hintId : undefined };
    const hint = el("p", { class: "hint", id: hintId, text: hintText });
    const labelNode = el("label", { for: id }, label, required ? " (required)" : "");
    let input;
    let read;
    const wrapper = el("div", { class: "field" });

    if (widget === "boolean") {
      input = el("input", { ...common, type: "checkbox", checked: schema.default === true });
      wrapper.classList.add("checkbox");
      wrapper.append(input, labelNode, hint);
      return { name, input, node: wrapper, read: () => input.checked };
    }

    if (widget === "enum") {
      input = el("select", { ...common, required });
      if (!required) input.append(el("option", { value: "", text: "(not set)" }));
      schema.enum.forEach((value, i) => {
        input.append(el("option", { value: String(i), text: typeof value === "string" ? value : JSON.stringify(value) }));
      });
      const initial = schema.enum.findIndex((v) => JSON.stringify(v) === JSON.stringify(schema.default));
      if (initial >= 0) input.value = String(initial);
      read = () => (input.value === "" ? undefined : schema.enum[Number(input.value)]);
    } else if (widget === "number" || widget === "integer") {
      input = el("input", {
        ...common,
        type: "number",
        inputmode: widget === "integer" ? "numeric" : "decimal",
        step: widget === "integer" ? "1" : "any",
        min: schema.minimum,
        max: schema.maximum,
        required,
        value: schema.default,
      });
      read = () => {
        if (input.value.trim() === "") return undefined;
        const value = Number(input.value);
        if (!Number.isFinite(value) || (widget === "integer" && !Number.isInteger(value))) {
          throw new FieldError(input, `${label} must be ${widget === "integer" ? "a whole number" : "a number"}.`);
        }
        return value;
      };
    } else if (widget === "string") {
      // Short unless the schema allows a lot of text (a pattern or format means a short token).
      const long = schema.maxLength !== undefined ? schema.maxLength > 2000 : !(schema.pattern || schema.format);
      const attrs = { ...common, required, minlength: schema.minLength, maxlength: schema.maxLength };
      input = long ? el("textarea", { ...attrs, rows: 3 }) : el("input", { ...attrs, type: "text" });
      if (schema.default !== undefined) input.value = schema.default;
      read = () => (input.value === "" ? undefined : input.value);
    } else if (widget === "integers") {
      input = el("input", { ...common, type: "text", inputmode: "numeric", required, autocomplete: "off" });
      if (Array.isArray(schema.default)) input.value = schema.default.join(", ");
      read = () => {
        const parts = input.value.split(/[\s,]+/).filter(Boolean);
        if (!parts.length) return undefined;
        if (!parts.every((p) => /^-?\d+$/.test(p))) throw new FieldError(input, `${label}: write whole numbers separated by commas.`);
        return parts.map((p) => parseInt(p, 10));
      };
    } else {
      input = el("textarea", { ...common, rows: 3, required, spellcheck: "false" });
      if (schema.default !== undefined) input.value = JSON.stringify(schema.default, null, 2);
      read = () => parseJson(input, label);
    }
    wrapper.append(labelNode, input, hint);

    // Binary input travels as base64 in JSON: offer a file picker that fills the field.
    if (widget === "string" && isBase64(name, schema)) {
      const pickerId = `${id}-file`;
      const picker = el("input", { type: "file", id: pickerId });
      picker.addEventListener("change", () => {
        const file = picker.files[0];
        if (!file) return;
        const reader = new FileReader();
        reader.onload = () => {
          input.value = String(reader.result).replace(/^data:[^,]*,/, "");
        };
        reader.readAsDataURL(file);
      });
      wrapper.append(el("div", { class: "hint" }, el("label", { for: pickerId, text: "…or choose a file: " }), picker));
    }
    return { name, input, node: wrapper, read };
  }

  function parseJson(input, label) {
    if (input.value.trim() === "") return undefined;
    try {
      return JSON.parse(input.value);
    } catch (err) {
      throw new FieldError(input, `${label} is not valid JSON: ${err.message}`);
    }
  }

  function renderFields() {
    const container = $("payload-fields");
    container.replaceChildren();
    fields = [];
    const selected = kinds.find((k) => k.name === $("kind").value);
    $("kind-description").textContent = selected ? selected.description || "" : "";
    if (!selected) return;
    const schema = selected.input_schema;
    if (needsRawPayload(schema)) {
      const input = el("textarea", {
        id: "field-payload",
        name: "payload",
        rows: 6,
        spellcheck: "false",
        "aria-describedby": "field-payload-hint",
      });
      input.value = "{}";
      container.append(
        el(
          "div",
          { class: "field" },
          el("label", { for: "field-payload", text: "Payload (JSON)" }),
          input,
          el("p", { class: "hint", id: "field-payload-hint", text: "The job's input as a JSON object." }),
          el("details", {}, el("summary", { text: "Input schema" }), el("pre", { text: JSON.stringify(schema, null, 2) })),
        ),
      );
      fields.push({ raw: true, input, read: () => parseJson(input, "Payload") });
      return;
    }
    const properties = Object.entries(schema.properties || {});
    const hasUpload = properties.some(([name, s]) => isUpload(name, s));
    const labelOf = (name) => {
      const s = (schema.properties || {})[name] || {};
      return isUpload(name, s) ? `a file to upload (${name})` : s.title || name;
    };
    for (const note of alternatives(schema, labelOf)) container.append(el("p", { class: "hint", text: note }));
    const required = new Set(schema.required || []);
    // With a file picker on the form, pasting the same file as base64 is the rare way: folded.
    const inline = hasUpload ? el("details", { class: "inline-input" }, el("summary", { text: "Or give the file inline (base64)" })) : null;
    properties.forEach(([name, propertySchema], i) => {
      const field = buildField(name, propertySchema, required.has(name), i);
      if (inline && isBase64(name, propertySchema) && !required.has(name)) inline.append(field.node);
      else container.append(field.node);
      fields.push(field);
    });
    if (inline && inline.children.length > 1) container.append(inline);
    if (!fields.length) container.append(el("p", { class: "hint", text: "This kind takes no input." }));
  }

  function readPayload() {
    for (const field of fields) field.input.removeAttribute("aria-invalid");
    if (fields.length === 1 && fields[0].raw) {
      const payload = fields[0].read();
      return payload === undefined ? {} : payload;
    }
    const payload = {};
    for (const field of fields) {
      const value = field.read();
      if (value !== undefined) payload[field.name] = value;
    }
    return payload;
  }

  async function loadKinds() {
    const select = $("kind");
    try {
      const { data } = await api("GET", JP.urls.kinds);
      kinds = data.kinds || [];
    } catch (err) {
      select.replaceChildren(el("option", { value: "", text: "Kinds could not be loaded" }));
      showError($("form-error"), err);
      return;
    }
    select.replaceChildren(...kinds.map((k) => el("option", { value: k.name, text: k.name })));
    select.disabled = false;
    $("submit-button").disabled = kinds.length === 0;
    renderFields();
    JP.kindsLoaded(kinds);
  }

  async function submitJob(event) {
    event.preventDefault();
    const errorBox = $("form-error");
    clearError(errorBox);
    let payload;
    try {
      payload = readPayload();
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      err.input.setAttribute("aria-invalid", "true");
      err.input.focus();
      showError(errorBox, { message: err.message });
      return;
    }
    const body = { kind: $("kind").value, payload };
    if ($("priority").value) body.priority = $("priority").value;
    const button = $("submit-button");
    button.disabled = true;
    try {
      const { data: job } = await api("POST", JP.urls.jobs, { body });
      JP.upsertRow(job, { prepend: true });
      JP.watch(job);
    } catch (err) {
      showError(errorBox, err);
    } finally {
      button.disabled = false;
    }
  }

  JP.startForm = function startForm() {
    $("kind").addEventListener("change", renderFields);
    $("submit-form").addEventListener("submit", submitJob);
    loadKinds();
  };
})();
