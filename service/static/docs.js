// /docs: the operations of /openapi.json as a plain list (no third-party script, no CDN).
"use strict";

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  if (className) node.className = className;
  return node;
}

async function showOperations() {
  const target = document.getElementById("operations");
  try {
    const res = await fetch("/openapi.json");
    if (!res.ok) throw new Error(`openapi.json: ${res.status}`);
    const spec = await res.json();
    document.getElementById("api-description").textContent = spec.info.description || "";
    target.replaceChildren();
    for (const [path, operations] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(operations)) {
        const panel = element("details", null, "panel");
        const summary = element("summary", `${method.toUpperCase()} ${path}`);
        panel.append(summary, element("p", op.summary || "", "hint"));
        if (op.description) panel.append(element("p", op.description));
        const codes = Object.keys(op.responses || {}).join(", ");
        panel.append(element("p", `Answers: ${codes}`, "hint"));
        target.append(panel);
      }
    }
  } catch (err) {
    target.replaceChildren(element("p", String(err), "error"));
  }
}

showOperations();
