// Usage charts for Settings > Developer, drawn as inline SVG: no library, nothing inline that the
// Content-Security-Policy would refuse (colours come from classes in app.css, sizes from SVG
// attributes). Each chart carries its own summary in words (the SVG's aria-label) and a table of
// the numbers behind it, so it can be read without seeing it.
//
// Buckets are the API's: {start, success, clientError, rateLimited, rejected}, oldest first.
'use strict';

window.HefflCharts = (() => {
  const SVG = 'http://www.w3.org/2000/svg';

  const OUTCOMES = [
    { field: 'success', label: 'Success', one: 'success', many: 'success' },
    { field: 'clientError', label: 'Client error', one: 'client error', many: 'client errors' },
    { field: 'rateLimited', label: 'Rate limited', one: 'rate limited', many: 'rate limited' },
    { field: 'rejected', label: 'Rejected', one: 'rejected', many: 'rejected' },
  ];

  const numberFormat = new Intl.NumberFormat();
  // Days and hours are UTC (the API's buckets), as the page says once, above the charts.
  const dayFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', timeZone: 'UTC' });
  const longDayFormat = new Intl.DateTimeFormat(undefined, {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    year: 'numeric',
    timeZone: 'UTC',
  });
  const hourFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' });
  const longHourFormat = new Intl.DateTimeFormat(undefined, {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    hour: '2-digit',
    minute: '2-digit',
    timeZone: 'UTC',
  });

  const count = (n) => numberFormat.format(n);
  const plural = (n, one, many) => `${count(n)} ${n === 1 ? one : many}`;
  const total = (bucket) => OUTCOMES.reduce((sum, o) => sum + (Number(bucket[o.field]) || 0), 0);

  function totals(buckets) {
    const sums = { total: 0 };
    for (const o of OUTCOMES) sums[o.field] = 0;
    for (const bucket of buckets) {
      for (const o of OUTCOMES) sums[o.field] += Number(bucket[o.field]) || 0;
    }
    sums.total = OUTCOMES.reduce((sum, o) => sum + sums[o.field], 0);
    return sums;
  }

  function periodLabel(start, granularity, long) {
    const date = new Date(start);
    if (granularity === 'hour') return (long ? longHourFormat : hourFormat).format(date);
    return (long ? longDayFormat : dayFormat).format(date);
  }

  /** The chart in words: the totals by outcome and the busiest period. */
  function summarize(buckets, granularity, title) {
    const sums = totals(buckets);
    if (sums.total === 0) return `${title}: no requests.`;
    const parts = OUTCOMES.filter((o) => sums[o.field] > 0).map((o) => plural(sums[o.field], o.one, o.many));
    let busiest = buckets[0];
    for (const bucket of buckets) if (total(bucket) > total(busiest)) busiest = bucket;
    const unit = granularity === 'hour' ? 'hour' : 'day';
    return (
      `${title}: ${plural(sums.total, 'request', 'requests')} (${parts.join(', ')}). ` +
      `Busiest ${unit}: ${periodLabel(busiest.start, granularity, true)}, with ${plural(total(busiest), 'request', 'requests')}.`
    );
  }

  function svgElement(name, attributes) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    return node;
  }

  /** 1, 2, 5, 10, 20, 50…: a round top for the scale. */
  function niceCeiling(value) {
    if (value <= 1) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function legend(sums) {
    const list = document.createElement('ul');
    list.className = 'legend';
    for (const o of OUTCOMES) {
      const item = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = `swatch fill-${o.field}`;
      swatch.setAttribute('aria-hidden', 'true');
      const label = document.createElement('span');
      label.textContent = `${o.label} `;
      const value = document.createElement('strong');
      value.textContent = count(sums[o.field]);
      item.append(swatch, label, value);
      list.append(item);
    }
    return list;
  }

  function table(buckets, granularity, caption) {
    const details = document.createElement('details');
    details.className = 'chart-table';
    const summary = document.createElement('summary');
    summary.textContent = 'Show the numbers';
    const tableElement = document.createElement('table');
    const captionElement = document.createElement('caption');
    captionElement.className = 'visually-hidden';
    captionElement.textContent = caption;
    const head = document.createElement('thead');
    const headRow = document.createElement('tr');
    const columns = [granularity === 'hour' ? 'Hour (UTC)' : 'Day (UTC)', ...OUTCOMES.map((o) => o.label), 'Total'];
    for (const column of columns) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = column;
      headRow.append(th);
    }
    head.append(headRow);
    const body = document.createElement('tbody');
    // Newest first: the reader most often wants today.
    for (const bucket of [...buckets].reverse()) {
      const row = document.createElement('tr');
      const th = document.createElement('th');
      th.scope = 'row';
      // A phone shows the short label (app.css), so every column fits without scrolling.
      const long = document.createElement('span');
      long.className = 'period-long';
      long.textContent = periodLabel(bucket.start, granularity, true);
      const short = document.createElement('span');
      short.className = 'period-short';
      short.textContent = periodLabel(bucket.start, granularity, false);
      th.append(long, short);
      row.append(th);
      for (const value of [...OUTCOMES.map((o) => bucket[o.field]), total(bucket)]) {
        const td = document.createElement('td');
        td.textContent = count(Number(value) || 0);
        row.append(td);
      }
      body.append(row);
    }
    tableElement.append(captionElement, head, body);
    const wrap = document.createElement('div');
    wrap.className = 'chart-table-wrap';
    wrap.append(tableElement);
    details.append(summary, wrap);
    return details;
  }

  /** A stacked bar per period, with its legend, summary and table. */
  function stackedChart(buckets, { granularity, title, testid }) {
    const width = 600;
    const height = 100;
    const sums = totals(buckets);
    const top = niceCeiling(Math.max(1, ...buckets.map(total)));
    const slot = width / Math.max(1, buckets.length);
    const gap = Math.min(2, slot * 0.15);

    const figure = document.createElement('figure');
    figure.className = 'chart';
    if (testid) figure.dataset.testid = testid;
    figure.dataset.total = String(sums.total);

    const plot = document.createElement('div');
    plot.className = 'chart-plot';
    const axis = document.createElement('div');
    axis.className = 'chart-axis-y';
    axis.setAttribute('aria-hidden', 'true');
    const topLabel = document.createElement('span');
    topLabel.textContent = count(top);
    const zeroLabel = document.createElement('span');
    zeroLabel.textContent = '0';
    axis.append(topLabel, zeroLabel);

    const svg = svgElement('svg', {
      viewBox: `0 0 ${width} ${height}`,
      preserveAspectRatio: 'none',
      role: 'img',
      class: 'chart-svg',
      focusable: 'false',
    });
    const label = summarize(buckets, granularity, title);
    svg.setAttribute('aria-label', label);
    figure.dataset.summary = label;
    for (const y of [0, height / 2]) {
      svg.append(svgElement('line', { x1: 0, x2: width, y1: y, y2: y, class: 'gridline', 'vector-effect': 'non-scaling-stroke' }));
    }
    svg.append(svgElement('line', { x1: 0, x2: width, y1: height, y2: height, class: 'baseline', 'vector-effect': 'non-scaling-stroke' }));
    buckets.forEach((bucket, i) => {
      const group = svgElement('g', { class: 'bar' });
      const tip = svgElement('title');
      const parts = OUTCOMES.map((o) => plural(Number(bucket[o.field]) || 0, o.one, o.many));
      tip.textContent = `${periodLabel(bucket.start, granularity, true)}: ${plural(total(bucket), 'request', 'requests')} — ${parts.join(', ')}`;
      group.append(tip);
      // A full-height, invisible target so the tooltip works on empty periods too.
      group.append(svgElement('rect', { x: i * slot, y: 0, width: slot, height, class: 'bar-hit' }));
      let y = height;
      for (const o of OUTCOMES) {
        const value = Number(bucket[o.field]) || 0;
        if (value === 0) continue;
        const h = (value / top) * height;
        y -= h;
        group.append(
          svgElement('rect', { x: i * slot + gap, y, width: Math.max(0.5, slot - 2 * gap), height: h, class: `fill-${o.field}` }),
        );
      }
      svg.append(group);
    });
    plot.append(axis, svg);

    const xAxis = document.createElement('div');
    xAxis.className = 'chart-axis-x';
    xAxis.setAttribute('aria-hidden', 'true');
    if (buckets.length > 0) {
      const middle = buckets[Math.floor((buckets.length - 1) / 2)];
      for (const bucket of [buckets[0], middle, buckets[buckets.length - 1]]) {
        const tick = document.createElement('span');
        tick.textContent = periodLabel(bucket.start, granularity, false);
        xAxis.append(tick);
      }
    }

    const caption = document.createElement('figcaption');
    caption.className = 'visually-hidden';
    caption.textContent = label;
    figure.append(plot, xAxis, legend(sums), table(buckets, granularity, title), caption);
    return figure;
  }

  /** A small chart of daily totals for a key's row. */
  function sparkline(buckets, name) {
    const width = 90;
    const height = 24;
    const values = buckets.map(total);
    const sum = values.reduce((a, b) => a + b, 0);
    const top = Math.max(1, ...values);
    const slot = width / Math.max(1, values.length);
    const svg = svgElement('svg', {
      viewBox: `0 0 ${width} ${height}`,
      preserveAspectRatio: 'none',
      role: 'img',
      class: 'sparkline',
      focusable: 'false',
    });
    const sums = totals(buckets);
    const refused = OUTCOMES.filter((o) => o.field !== 'success' && sums[o.field] > 0)
      .map((o) => `${count(sums[o.field])} ${sums[o.field] === 1 ? o.one : o.many}`);
    const words =
      sum === 0
        ? `${name}: no requests in the last 30 days`
        : `${name}: ${plural(sum, 'request', 'requests')} in the last 30 days` +
          (refused.length > 0 ? ` (${refused.join(', ')})` : '');
    svg.setAttribute('aria-label', words);
    const tip = svgElement('title');
    tip.textContent = words;
    svg.append(tip);
    svg.append(svgElement('line', { x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5, class: 'baseline', 'vector-effect': 'non-scaling-stroke' }));
    // Each day's bar stacked by outcome, in the big chart's colours: rate-limited and refused
    // traffic shows as such, not as more of the same.
    values.forEach((value, i) => {
      if (value === 0) return;
      const h = Math.max(1.5, (value / top) * (height - 1));
      let y = height;
      for (const o of OUTCOMES) {
        const part = Number(buckets[i][o.field]) || 0;
        if (part === 0) continue;
        const ph = (part / value) * h;
        y -= ph;
        svg.append(
          svgElement('rect', {
            x: i * slot + slot * 0.12,
            y,
            width: slot * 0.76,
            height: ph,
            class: `fill-${o.field}`,
          }),
        );
      }
    });
    return { svg, sum, words };
  }

  return { OUTCOMES, stackedChart, sparkline, summarize, totals, count, plural };
})();
