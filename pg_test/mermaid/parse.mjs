// Reads a JSON array of Mermaid texts on stdin; prints, per text, either the parse error or the
// flowchart's vertices (id, label text, classes) as Mermaid itself understood them.
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const text of JSON.parse(input)) {
  try {
    await mermaid.parse(text);
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
    const vertices = [...diagram.db.getVertices().values()].map((v) => ({ id: v.id, text: v.text, classes: v.classes }));
    const edges = diagram.db.getEdges().length;
    out.push({ ok: true, vertices, edges });
  } catch (e) {
    out.push({ ok: false, error: String(e && e.message ? e.message : e) });
  }
}
process.stdout.write(JSON.stringify(out));
