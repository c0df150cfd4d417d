"""A self-contained HTML picture of documents and the relations found in them.

Loaded through ``trust_remote_code`` by the pipeline (`html=` option): flat sibling, standard library only.

    from hf_docre import render
    result = pipe(text, return_document=True, return_context=True)
    render(result)                       # displays inline in Jupyter
    render(result).save("report.html")   # or render(document, relations)

The page shows each document's text with every entity mention highlighted by type, the relations listed (head,
relation, tail, score) and drawn as arrows between their entities; selecting a relation (click, or the arrow keys
in the list) marks its head and tail, the words its localized context pooling weighs most (`return_context=True`)
and its evidence sentences (when the model predicts evidence). No network access, no external script or style.
"""

from __future__ import annotations

import html as html_lib
import json
from collections.abc import Mapping, Sequence

TYPE_COLOURS = {"PER": "#ffd6a5", "ORG": "#bde0fe", "LOC": "#caffbf", "TIME": "#e4c1f9", "NUM": "#fdffb6", "MISC": "#ffc6ff"}
_OTHER_COLOURS = ("#d0f4de", "#f1c0e8", "#cfbaf0", "#a3c4f3", "#90dbf4", "#8eecf5", "#98f5e1", "#b9fbc0")


def _document_text(document):
    """(text, word char spans per sentence) for a text-input document (its own offsets) or a DocRED one (words
    joined with single spaces, sentences with one space)."""
    offsets = document.get("offsets")
    if "text" in document and offsets is not None:
        return document["text"], [[tuple(span) for span in sentence] for sentence in offsets["words"]]
    pieces, spans, cursor = [], [], 0
    for sentence in document["sents"]:
        sentence_spans = []
        for word in sentence:
            if pieces:
                pieces.append(" ")
                cursor += 1
            pieces.append(word)
            sentence_spans.append((cursor, cursor + len(word)))
            cursor += len(word)
        spans.append(sentence_spans)
    return "".join(pieces), spans


def _normalise(items):
    """render()'s inputs -> [(document, relations)]."""
    if isinstance(items, Mapping) and "document" in items:
        return [(items["document"], items.get("relations") or [])]
    if isinstance(items, Mapping):
        return [(items, [])]
    pairs = []
    for item in items:
        if isinstance(item, Mapping) and "document" in item:
            pairs.append((item["document"], item.get("relations") or []))
        else:
            raise TypeError("render() takes (document, relations), a pipeline result with return_document=True, or a list of those")
    return pairs


def _document_data(document, relations):
    text, word_spans = _document_text(document)
    words = [span for sentence in word_spans for span in sentence]
    first_word = [0]
    for sentence in word_spans:
        first_word.append(first_word[-1] + len(sentence))
    offsets = document.get("offsets")
    entities = []
    for e, mentions in enumerate(document["vertexSet"]):
        spans = []
        for m, mention in enumerate(mentions):
            if offsets is not None and "text" in document:
                start, end = offsets["mentions"][e][m]
            else:
                sentence = word_spans[mention["sent_id"]]
                start, end = sentence[mention["pos"][0]][0], sentence[mention["pos"][1] - 1][1]
            spans.append([int(start), int(end)])
        entities.append({"type": mentions[0].get("type", "") if mentions else "", "name": text[spans[0][0]:spans[0][1]] if spans else "",
                         "mentions": spans})

    def word_index(item):  # a context word: its (sentence, position) numbered across the document
        return first_word[item["sent_id"]] + item["pos"]

    listed = []
    for relation in relations:
        listed.append({
            "head": int(relation["head"]["index"]), "tail": int(relation["tail"]["index"]),
            "relation": str(relation.get("relation", relation.get("relation_id", ""))),
            "relation_id": str(relation.get("relation_id", "")),
            "score": None if relation.get("score") is None else float(relation["score"]),
            "evidence": [int(s) for s in relation.get("evidence") or []],
            "context": [{"word": word_index(c), "weight": float(c.get("weight", 0.0))} for c in relation.get("context") or []],
        })
    sentences = [[sentence[0][0], sentence[-1][1]] if sentence else [0, 0] for sentence in word_spans]
    return text, words, sentences, entities, listed


def _text_html(text, words, sentences, entities):
    """The text with sentences, words and (non-overlapping) mentions as elements; everything escaped."""
    candidates = sorted(((s, e, ent, m) for ent, entity in enumerate(entities) for m, (s, e) in enumerate(entity["mentions"])),
                        key=lambda c: (c[0], -(c[1] - c[0])))
    marks, end_of_last = {}, -1
    for start, end, entity, m in candidates:  # nested/overlapping mentions: the outer (first, longest) one is drawn
        if start >= end_of_last:
            marks[start] = (end, entity, m)
            end_of_last = end
    parts, cursor, open_mark = [], 0, None
    word_at = {start: (w, end) for w, (start, end) in enumerate(words)}
    sentence_at = {start: s for s, (start, _) in enumerate(sentences)}
    sentence_end = {end: s for s, (_, end) in enumerate(sentences)}
    boundaries = sorted(set(word_at) | set(sentence_at) | set(sentence_end) | set(marks) | {e for e, _, _ in marks.values()} | {len(text)})
    for position in boundaries:
        if position > cursor:
            parts.append(html_lib.escape(text[cursor:position]))
            cursor = position
        if open_mark is not None and open_mark == position:
            parts.append("</mark>")
            open_mark = None
        if position in sentence_end:
            parts.append("</span>")
        if position in sentence_at:
            parts.append(f'<span class="sent" data-s="{sentence_at[position]}">')
        if position in marks:
            end, entity, m = marks[position]
            kind = entities[entity]["type"]
            title = html_lib.escape(f"{entities[entity]['name']} ({kind}, entity {entity})", quote=True)
            parts.append(f'<mark class="ent" data-e="{entity}" data-m="{m}" data-type="{html_lib.escape(kind, quote=True)}" title="{title}">')
            open_mark = end
        if position in word_at:
            w, end = word_at[position]
            parts.append(f'<span class="w" data-w="{w}">{html_lib.escape(text[position:end])}</span>')
            cursor = end
    return "".join(parts)


def _styles(types):
    rules, extra = [], iter(_OTHER_COLOURS * 8)
    for kind in types:
        colour = TYPE_COLOURS.get(kind) or next(extra)
        rules.append(f'mark.ent[data-type="{html_lib.escape(kind, quote=True)}"], .key[data-type="{html_lib.escape(kind, quote=True)}"] {{ background: {colour}; }}')
    return "\n".join(rules)


_CSS = """
body { font: 15px/1.9 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #fff; }
.docre-doc { display: grid; grid-template-columns: minmax(0, 3fr) minmax(280px, 1fr); gap: 16px; padding: 16px; border-bottom: 1px solid #ddd; }
.docre-doc h2 { grid-column: 1 / -1; font-size: 17px; margin: 0; }
/* Text and relation list side by side, each scrolling on its own: the list stays beside the text it explains
   however long the article is. */
.docre-text { position: relative; white-space: pre-wrap; padding: 40px 8px 8px; max-height: calc(100vh - 130px); overflow: auto; }
.docre-text svg { position: absolute; left: 0; top: 0; pointer-events: none; overflow: visible; }
.docre-panel { align-self: start; max-height: calc(100vh - 130px); overflow-y: auto; overflow-x: hidden; box-sizing: border-box;
  padding: 4px 4px 12px; font-size: 14px; }
.docre-panel ol { margin: 4px 0; }
.docre-filters { display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; font-size: 13px; margin: 4px 0; }
.docre-filters select, .docre-filters input { font: inherit; max-width: 100%; }
.docre-filters label { max-width: 100%; }
.docre-empty { background: #f8f9fa; border-radius: 4px; padding: 6px 8px; font-size: 13px; }
.docre-entities { font-size: 13px; }
.docre-entities li { line-height: 1.5; }
mark.ent { border-radius: 3px; padding: 1px 2px; color: inherit; }
mark.ent.sel-head { outline: 2px solid #d62828; }
mark.ent.sel-tail { outline: 2px solid #1d3557; }
mark.ent.hover { outline: 2px dashed #6c757d; }
.sent.evidence { background: #fff3bf; }
.w.ctx { box-shadow: inset 0 -3px 0 rgba(214, 40, 40, var(--weight)); }
.relation { cursor: pointer; padding: 2px 4px; border-radius: 3px; }
.relation:hover { background: #f1f3f5; }
.relation.selected { background: #e9ecef; font-weight: 600; }
.relation[hidden] { display: none; }
.relation .score { color: #666; font-variant-numeric: tabular-nums; }
.docre-legend .key { display: inline-block; padding: 0 6px; margin: 2px; border-radius: 3px; font-size: 13px; }
.docre-details { font-size: 13px; color: #444; }
path.arrow { fill: none; stroke: #6c757d; stroke-width: 1.8; stroke-dasharray: 5 3; }
path.arrow.selected { stroke: #d62828; stroke-width: 2.5; stroke-dasharray: none; }
text.arrow-label { font-size: 12px; font-weight: 600; fill: #d62828; paint-order: stroke; stroke: #fff; stroke-width: 4px;
  stroke-linejoin: round; }
"""

_SCRIPT = r"""
(function () {
  var errors = [];
  window.addEventListener("error", function (event) { errors.push(String(event.message)); document.body.setAttribute("data-errors", errors.join(" | ")); });
  var data = JSON.parse(document.getElementById("docre-data").textContent);
  // A mention wrapped over two lines has two boxes: arrows and distances use its first.
  function box(el) { var rects = el.getClientRects(); return rects.length ? rects[0] : el.getBoundingClientRect(); }
  function nearest(a, b) {
    var best = null;
    a.forEach(function (x) { b.forEach(function (y) {
      var rx = box(x), ry = box(y);
      var d = Math.abs(rx.top - ry.top) * 4 + Math.abs(rx.left - ry.left);
      if (best === null || d < best[0]) best = [d, x, y];
    }); });
    return best;
  }
  // "#select=<r>" (or "#select=<d>:<r>") selects relation r of document d when the page opens, and scrolls to it;
  // "type=<relation>" and "score=<least>" (joined with "&") set the filters.
  var hash = decodeURIComponent(window.location.hash);
  var wanted = /select=(?:(\d+):)?(\d+)/.exec(hash);
  var wantedType = /type=([^&]+)/.exec(hash), wantedScore = /score=(-?[\d.]+)/.exec(hash);
  data.documents.forEach(function (doc, d) {
    var section = document.querySelector('.docre-doc[data-doc="' + d + '"]');
    var textBox = section.querySelector(".docre-text");
    var panel = section.querySelector(".docre-panel");
    var svg = textBox.querySelector("svg");
    var items = Array.prototype.slice.call(section.querySelectorAll(".relation"));
    var details = section.querySelector(".docre-details");
    var typeFilter = section.querySelector("select.docre-type");
    var scoreFilter = section.querySelector("input.docre-score");
    var scoreShown = section.querySelector(".docre-score-value");
    var shownCount = section.querySelector(".docre-shown");
    var hovered = -1;
    function marks(entity) { return Array.prototype.slice.call(textBox.querySelectorAll('mark.ent[data-e="' + entity + '"]')); }
    function visible(r) { return items[r] && !items[r].hidden; }
    function arrow(relation, r, selected, frame) {
      var pair = nearest(marks(relation.head), marks(relation.tail));
      if (pair === null) return null;
      var a = box(pair[1]), b = box(pair[2]);
      // in the text box's content coordinates (it scrolls, the svg scrolls with its content)
      var dx = textBox.scrollLeft - frame.left, dy = textBox.scrollTop - frame.top;
      var x1 = a.left + a.width / 2 + dx, y1 = a.top + dy, x2 = b.left + b.width / 2 + dx, y2 = b.top + dy;
      var lift = Math.min(36, 12 + Math.abs(x2 - x1) / 12);
      var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", "M" + x1 + "," + y1 + " C" + x1 + "," + (Math.min(y1, y2) - lift) + " " + x2 + "," + (Math.min(y1, y2) - lift) + " " + x2 + "," + y2);
      path.setAttribute("class", "arrow" + (selected ? " selected" : ""));
      path.setAttribute("data-r", r);
      path.setAttribute("marker-end", "url(#docre-arrowhead-" + d + ")");
      svg.appendChild(path);
      var label = document.createElementNS("http://www.w3.org/2000/svg", "text");
      label.setAttribute("x", (x1 + x2) / 2); label.setAttribute("y", Math.min(y1, y2) - lift * 0.75 - 4);
      label.setAttribute("class", "arrow-label"); label.setAttribute("text-anchor", "middle");
      label.textContent = relation.relation;
      svg.appendChild(label);
      return path;
    }
    // Arrows for the selected relation and the one under the pointer only: on a long article, all of them at once
    // would cover the text.
    function draw() {
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      var frame = textBox.getBoundingClientRect();
      svg.setAttribute("width", textBox.scrollWidth); svg.setAttribute("height", textBox.scrollHeight);
      var defs = document.createElementNS("http://www.w3.org/2000/svg", "defs");
      defs.innerHTML = '<marker id="docre-arrowhead-' + d + '" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#d62828"></path></marker>';
      svg.appendChild(defs);
      if (hovered >= 0 && hovered !== doc.selected && visible(hovered)) arrow(doc.relations[hovered], hovered, false, frame);
      if (doc.selected >= 0 && visible(doc.selected)) arrow(doc.relations[doc.selected], doc.selected, true, frame);
    }
    function select(r, scroll) {
      doc.selected = r;
      textBox.querySelectorAll(".sel-head, .sel-tail, .ctx, .evidence").forEach(function (el) { el.classList.remove("sel-head", "sel-tail", "ctx", "evidence"); el.style.removeProperty("--weight"); });
      items.forEach(function (item) { item.classList.toggle("selected", Number(item.getAttribute("data-r")) === r); });
      var relation = doc.relations[r];
      details.textContent = "";
      if (relation) {
        marks(relation.head).forEach(function (m) { m.classList.add("sel-head"); });
        marks(relation.tail).forEach(function (m) { m.classList.add("sel-tail"); });
        var top = relation.context.length ? relation.context[0].weight : 1;
        relation.context.forEach(function (c) {
          var w = textBox.querySelector('.w[data-w="' + c.word + '"]');
          if (w) { w.classList.add("ctx"); w.style.setProperty("--weight", (0.25 + 0.75 * c.weight / top).toFixed(3)); }
        });
        relation.evidence.forEach(function (s) { var el = textBox.querySelector('.sent[data-s="' + s + '"]'); if (el) el.classList.add("evidence"); });
        details.textContent = (relation.context.length ? "context: " + relation.context.map(function (c) {
          var w = textBox.querySelector('.w[data-w="' + c.word + '"]'); return (w ? w.textContent : "?") + " " + (100 * c.weight).toFixed(0) + "%"; }).join(", ") : "no context words (return_context=True adds them)")
          + (relation.evidence.length ? "; evidence sentences: " + relation.evidence.join(", ") : "");
        if (scroll) {  // the text box and the list scroll, the page stays where it is
          var pair = nearest(marks(relation.head), marks(relation.tail));
          if (pair !== null) {
            var at = pair[1].getBoundingClientRect().top - textBox.getBoundingClientRect().top + textBox.scrollTop;
            textBox.scrollTop = Math.max(0, at - textBox.clientHeight / 2);
          }
          var itemTop = items[r].getBoundingClientRect().top - panel.getBoundingClientRect().top + panel.scrollTop;
          if (itemTop < panel.scrollTop || itemTop + items[r].offsetHeight > panel.scrollTop + panel.clientHeight) {
            panel.scrollTop = Math.max(0, itemTop - panel.clientHeight / 3);
          }
        }
      }
      draw();
    }
    function applyFilters() {
      var kind = typeFilter ? typeFilter.value : "";
      var least = scoreFilter ? Number(scoreFilter.value) : -Infinity;
      if (scoreShown) scoreShown.textContent = Number(least).toFixed(2);
      var shown = 0;
      items.forEach(function (item, r) {
        var relation = doc.relations[r];
        item.hidden = (kind !== "" && relation.relation !== kind) || (relation.score !== null && relation.score < least);
        if (!item.hidden) shown += 1;
      });
      if (shownCount) shownCount.textContent = shown;
      if (!visible(doc.selected)) {
        var first = items.findIndex(function (item) { return !item.hidden; });
        select(first, false);
      } else { draw(); }
    }
    items.forEach(function (item) {
      var r = Number(item.getAttribute("data-r"));
      item.addEventListener("click", function () { select(r, true); });
      item.addEventListener("mouseenter", function () { hovered = r; marks(doc.relations[r].head).concat(marks(doc.relations[r].tail)).forEach(function (m) { m.classList.add("hover"); }); draw(); });
      item.addEventListener("mouseleave", function () { hovered = -1; textBox.querySelectorAll(".hover").forEach(function (m) { m.classList.remove("hover"); }); draw(); });
      item.addEventListener("keydown", function (event) {
        var step = event.key === "ArrowDown" ? 1 : event.key === "ArrowUp" ? -1 : 0;
        if (!step) return;
        var next = r + step;
        while (items[next] && items[next].hidden) next += step;
        if (items[next]) { items[next].focus(); select(next, true); event.preventDefault(); }
      });
    });
    if (typeFilter) typeFilter.addEventListener("change", applyFilters);
    if (scoreFilter) scoreFilter.addEventListener("input", applyFilters);
    window.addEventListener("resize", draw);
    var start = wanted && Number(wanted[1] || 0) === d && doc.relations[Number(wanted[2])] ? Number(wanted[2]) : (doc.relations.length ? 0 : -1);
    select(start, Boolean(wanted) && start >= 0);
    if (typeFilter && wantedType) typeFilter.value = wantedType[1];
    if (scoreFilter && wantedScore) scoreFilter.value = wantedScore[1];
    if (wantedType || wantedScore) { applyFilters(); start = doc.selected; }
    // Where things are on screen (read by the browser test): the list beside the selected relation's text.
    var headMark = start >= 0 ? nearest(marks(doc.relations[start].head), marks(doc.relations[start].tail)) : null;
    var rect = function (el) { var b = el.getBoundingClientRect(); return [Math.round(b.left), Math.round(b.top), Math.round(b.right), Math.round(b.bottom)]; };
    section.setAttribute("data-layout", JSON.stringify({viewport: [window.innerWidth, window.innerHeight], panel: rect(panel),
      selected_item: start >= 0 ? rect(items[start]) : null, selected_mention: headMark ? rect(headMark[1]) : null}));
  });
  document.body.setAttribute("data-status", "rendered");
})();
"""


def _filters_html(listed):
    """A relation-type menu (with counts) and a least-score slider, when there is something to filter."""
    if len(listed) < 2:
        return ""
    kinds = {}
    for relation in listed:
        kinds[relation["relation"]] = kinds.get(relation["relation"], 0) + 1
    options = "".join(f'<option value="{html_lib.escape(kind, quote=True)}">{html_lib.escape(kind)} ({count})</option>'
                      for kind, count in sorted(kinds.items(), key=lambda item: (-item[1], item[0])))
    scores = [relation["score"] for relation in listed if relation["score"] is not None]
    slider = ""
    if scores:
        low = min(0.0, min(scores))
        slider = (f'<label>score &ge; <input class="docre-score" type="range" min="{low:g}" max="{max(scores):g}" '
                  f'step="any" value="{low:g}"> <span class="docre-score-value">{low:.2f}</span></label>')
    return (f'<div class="docre-filters"><label>type <select class="docre-type"><option value="">all</option>{options}'
            f'</select></label>{slider}</div>')


def _empty_html(entities):
    """What a page with no relation says, so that it still helps."""
    if not entities:
        hint = ("No entities were found, so no relation could be. Pass entities ({'text', 'entities': [...]}) or another "
                "`recognizer=`.")
    elif len(entities) == 1:
        hint = "Only one entity was found; a relation needs two. Check the recogniser's entities below."
    else:
        hint = (f"No relation scored above the threshold among these {len(entities)} entities. Check that the entities "
                "below are grouped right; a lower `threshold=` or `top_k=` in the pipeline shows the best candidates "
                "(a model that finds nothing anywhere is likely undertrained).")
    return f'<p class="docre-empty">{html_lib.escape(hint)}</p>'


def _entities_html(entities, open_list=False):
    items = "".join(f'<li><span class="key" data-type="{html_lib.escape(e["type"], quote=True)}">{html_lib.escape(e["name"])}</span> '
                    f'{html_lib.escape(e["type"])}, {len(e["mentions"])} mention{"s" if len(e["mentions"]) != 1 else ""}</li>'
                    for e in entities)
    return (f'<details class="docre-entities"{" open" if open_list else ""}><summary>{len(entities)} entities</summary>'
            f'<ol>{items}</ol></details>')


class DocREReport:
    """The HTML page `render()` returns: `.html` (the page), `.save(path)`, and inline display in Jupyter."""

    def __init__(self, page: str):
        self.html = page

    def save(self, path) -> str:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.html)
        return str(path)

    def _repr_html_(self):  # an iframe keeps the page's styles and script apart from the notebook's
        return (f'<iframe srcdoc="{html_lib.escape(self.html, quote=True)}" style="width: 100%; height: 640px; border: 1px solid #ddd;" '
                'sandbox="allow-scripts"></iframe>')

    def __str__(self):
        return self.html


def render(document, relations: Sequence | None = None, title: str | None = None, path=None) -> DocREReport:
    """Documents and their relations -> a self-contained HTML page ([`DocREReport`]).

    Args:
        document: a document (DocRED format, or the pipeline's processed text document) with `relations` (the
            pipeline's output for it); or, alone, a pipeline result made with `return_document=True` or a list of
            them (one section per document).
        relations: the relations of `document`.
        title: the page title.
        path: also write the page there.
    """
    pairs = _normalise(document) if relations is None else [(document, relations)]
    sections, payload, types = [], [], []
    for d, (doc, rels) in enumerate(pairs):
        if "vertexSet" not in doc:
            raise TypeError("render() needs the processed document (`sents`, `vertexSet`): pass the pipeline's result "
                            "with return_document=True, or a DocRED-format document")
        text, words, sentences, entities, listed = _document_data(doc, rels)
        for entity in entities:
            if entity["type"] not in types:
                types.append(entity["type"])
        payload.append({"relations": listed})
        items = []
        for r, relation in enumerate(listed):
            head, tail = entities[relation["head"]]["name"], entities[relation["tail"]]["name"]
            score = "" if relation["score"] is None else f' <span class="score">{relation["score"]:.2f}</span>'
            items.append(f'<li class="relation" tabindex="0" data-r="{r}" data-head="{relation["head"]}" data-tail="{relation["tail"]}">'
                         f'{html_lib.escape(head)} &rarr; <b>{html_lib.escape(relation["relation"])}</b> &rarr; {html_lib.escape(tail)}{score}</li>')
        heading = html_lib.escape(doc.get("title") or f"Document {d + 1}")
        digits = len(str(max(len(listed), 1)))
        sections.append(
            f'<section class="docre-doc" data-doc="{d}"><h2>{heading}</h2>'
            f'<div class="docre-text"><svg></svg>{_text_html(text, words, sentences, entities)}</div>'
            f'<div class="docre-panel"><div><b class="docre-shown">{len(listed)}</b> of <b>{len(listed)}</b> '
            f'relation{"s" if len(listed) != 1 else ""}, <b>{len(entities)}</b> entities</div>'
            f'{_filters_html(listed)}'
            f'<ol style="padding-left: {digits + 2}ch">{"".join(items)}</ol><div class="docre-details"></div>'
            f'{_empty_html(entities) if not listed else ""}{_entities_html(entities, open_list=not listed)}</div></section>'
        )
    legend = "".join(f'<span class="key" data-type="{html_lib.escape(t, quote=True)}">{html_lib.escape(t)}</span>' for t in types)
    data = json.dumps({"documents": payload}).replace("</", "<\\/")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html_lib.escape(title or 'hf_docre relations')}</title>"
        f"<style>{_CSS}\n{_styles(types)}</style></head><body>"
        f'<div class="docre-legend" style="padding: 8px 16px">{legend}</div>{"".join(sections)}'
        f'<script type="application/json" id="docre-data">{data}</script><script>{_SCRIPT}</script></body></html>\n'
    )
    report = DocREReport(page)
    if path is not None:
        report.save(path)
    return report
