// tables.js: on a phone, a table's rows as cards. Each body cell is labelled with its column's heading
// (data-label) and the table marked "cards"; ringfence.css then shows, on a narrow screen only, each row as a
// card of "heading: value" lines, its row heading the card's title, instead of a table wider than the
// screen. Without JavaScript such a table scrolls sideways inside its own box. Tables swapped in later (the
// live parts ringfence.js refreshes) are labelled as they arrive.
(function () {
  "use strict";

  function headings(table) {
    var head = table.tHead;
    if (!head || !head.rows.length) return null;
    // A heading row that holds links or fields (a sort, a filter) stays a table.
    if (head.querySelector("a, button, input, select")) return null;
    var row = head.rows[head.rows.length - 1];
    var names = [];
    for (var i = 0; i < row.cells.length; i++) {
      for (var span = 0; span < row.cells[i].colSpan; span++) {
        names.push(row.cells[i].textContent.replace(/\s+/g, " ").trim());
      }
    }
    return names;
  }

  function cards(table) {
    var names = headings(table);
    if (!names) return;
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        var column = 0;
        Array.prototype.forEach.call(row.cells, function (cell) {
          var name = cell.colSpan === 1 ? names[column] : "";
          // A row's own heading (its first cell, scope=row) is the card's title, not a labelled line.
          var title = column === 0 && cell.tagName === "TH" && cell.getAttribute("scope") === "row";
          if (name && !title) cell.setAttribute("data-label", name);
          column += cell.colSpan;
        });
      });
    });
    table.classList.add("cards");
  }

  function label(root) {
    if (root.nodeType !== 1) return;
    if (root.matches("table")) cards(root);
    root.querySelectorAll("table").forEach(cards);
  }

  document.addEventListener("DOMContentLoaded", function () {
    label(document.body);
    new MutationObserver(function (changes) {
      changes.forEach(function (change) { change.addedNodes.forEach(label); });
    }).observe(document.body, { childList: true, subtree: true });
  });
})();
